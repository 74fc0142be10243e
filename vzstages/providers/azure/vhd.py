"""Check a VHD as Azure does: a fixed disk whose footer is right and whose size is whole MiB.

Azure takes only fixed VHDs (the raw disk followed by a 512-byte footer), with a virtual size
that is a whole number of MiB. qemu-img writes them (`-O vpc -o subformat=fixed,force_size=on`),
and qemu-img's auto-detection reports a fixed VHD as raw, so the footer is read here.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

FOOTER = 512
COOKIE = b"conectix"
DISK_FIXED = 2
MiB = 1 << 20


class VhdError(ValueError):
    pass


@dataclass(frozen=True)
class Footer:
    current_size: int
    disk_type: int
    checksum: int


def checksum(footer: bytes) -> int:
    """One's complement of the sum of the footer's bytes, the checksum field counted as zero."""
    return ~sum(footer[:64] + b"\0\0\0\0" + footer[68:]) & 0xFFFFFFFF


VHD_EPOCH = 946684800  # 2000-01-01T00:00:00Z, where a footer's timestamp counts from


def settle_footer(path: Path, epoch: int, unique_id: bytes) -> None:
    """The footer qemu-img writes holds its clock and a random id: the stage's epoch and an id
    from its key instead (checksum made again), so the same key gives the same VHD."""
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.seek(size - FOOTER)
        footer = bytearray(f.read(FOOTER))
        if len(footer) != FOOTER or footer[:8] != COOKIE:
            raise VhdError(f"{path.name}: no VHD footer to settle")
        footer[24:28] = struct.pack(">I", max(0, epoch - VHD_EPOCH) & 0xFFFFFFFF)
        footer[68:84] = unique_id[:16]
        footer[64:68] = struct.pack(">I", checksum(bytes(footer)))
        f.seek(size - FOOTER)
        f.write(footer)


def read_footer(path: Path) -> Footer:
    """The footer of a fixed VHD that Azure would take; VhdError saying what is wrong otherwise."""
    size = path.stat().st_size
    if size < FOOTER:
        raise VhdError(f"{path.name}: {size} bytes is too small to be a VHD")
    with open(path, "rb") as f:
        f.seek(size - FOOTER)
        footer = f.read(FOOTER)
    if footer[:8] != COOKIE:
        raise VhdError(f"{path.name}: no VHD footer (cookie {footer[:8]!r}, not 'conectix')")
    (stored,) = struct.unpack(">I", footer[64:68])
    if stored != checksum(footer):
        raise VhdError(f"{path.name}: footer checksum {stored:#x} is not {checksum(footer):#x}")
    (current_size,) = struct.unpack(">Q", footer[48:56])
    (disk_type,) = struct.unpack(">I", footer[60:64])
    if disk_type != DISK_FIXED:
        raise VhdError(
            f"{path.name}: disk type {disk_type}, not fixed ({DISK_FIXED}); Azure takes fixed VHDs"
        )
    if current_size % MiB:
        raise VhdError(f"{path.name}: virtual size {current_size} is not a whole number of MiB")
    if size != current_size + FOOTER:
        raise VhdError(f"{path.name}: {size} bytes, not the disk's {current_size} plus the footer")
    return Footer(current_size, disk_type, stored)
