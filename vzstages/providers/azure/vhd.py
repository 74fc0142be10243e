"""Check a VHD as Azure does: a fixed disk whose footer is right and whose size is whole MiB.

Azure takes only fixed VHDs (the raw disk followed by a 512-byte footer), with a virtual size
that is a whole number of MiB. qemu-img writes them (`-O vpc -o subformat=fixed,force_size=on`),
and qemu-img's auto-detection reports a fixed VHD as raw, so the footer is read here.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from ...common.image_ids import COOKIE, FOOTER, checksum

DISK_FIXED = 2
MiB = 1 << 20


class VhdError(ValueError):
    pass


@dataclass(frozen=True)
class Footer:
    current_size: int
    disk_type: int
    checksum: int


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
