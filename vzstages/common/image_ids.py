"""The identities qemu-img writes into an image file from its clock and randomness, made stable:
the same key gives the same file.

- vmdk (monolithicSparse): the descriptor's content id (CID) is random, and its extent line names
  the file qemu-img wrote (the image's temporary name): the id comes from the key, the extent
  names the image's final name.
- vdi: the image and last-snapshot UUIDs are random: both come from the key.
- vhd: the footer holds qemu-img's clock and a random id: the stage's epoch and an id from the
  key instead (its checksum made again).
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

from ..errors import VzError
from ..volume.layout import identity

SECTOR = 512
VDI_UUIDS = 0x188  # uuid_image, then uuid_last_snap (VirtualBox's VDI header, version 1.1)
_CID = re.compile(rb"^CID=[0-9a-f]{1,8}$", re.M)  # qemu-img writes it unpadded
FOOTER = 512  # a VHD's footer, its last 512 bytes
COOKIE = b"conectix"
VHD_EPOCH = 946684800  # 2000-01-01T00:00:00Z, where a footer's timestamp counts from
_EXTENT = re.compile(rb'^(RW \d+ SPARSE )"[^"\n]*"$', re.M)


def settle(fmt: str, path: Path, final_name: str, key: str, epoch: int) -> None:
    if fmt == "vmdk":
        _settle_vmdk(path, final_name, key)
    elif fmt == "vdi":
        _settle_vdi(path, key)
    elif fmt == "vhd":
        _settle_vhd(path, key, epoch)


def checksum(footer: bytes) -> int:
    """A VHD footer's: one's complement of the sum of its bytes, the checksum field as zero."""
    return ~sum(footer[:64] + b"\0\0\0\0" + footer[68:]) & 0xFFFFFFFF


def _settle_vhd(path: Path, key: str, epoch: int) -> None:
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.seek(max(0, size - FOOTER))
        footer = bytearray(f.read(FOOTER))
        if len(footer) != FOOTER or footer[:8] != COOKIE:
            raise VzError(f"{path.name}: no VHD footer to settle")
        footer[24:28] = struct.pack(">I", max(0, epoch - VHD_EPOCH) & 0xFFFFFFFF)
        footer[68:84] = identity(key, "vhd").bytes
        footer[64:68] = struct.pack(">I", checksum(bytes(footer)))
        f.seek(size - FOOTER)
        f.write(footer)


def _settle_vmdk(path: Path, final_name: str, key: str) -> None:
    with open(path, "r+b") as f:
        header = f.read(SECTOR)
        if header[:4] != b"KDMV":
            raise VzError(f"{path.name}: not a sparse VMDK")
        offset, size = struct.unpack("<QQ", header[28:44])
        if not 0 < size <= 2048:
            raise VzError(f"{path.name}: a VMDK descriptor of {size} sectors")
        f.seek(offset * SECTOR)
        region = f.read(size * SECTOR)
        text = region.split(b"\0", 1)[0]
        cid = b"CID=%08x" % (identity(key, "vmdk").int & 0xFFFFFFFE)  # not ffffffff: "no parent"
        name = final_name.encode().replace(b'"', b"")
        settled = _EXTENT.sub(lambda m: m.group(1) + b'"' + name + b'"', _CID.sub(cid, text))
        if len(settled) > len(region):
            raise VzError(f"{path.name}: the VMDK descriptor has no room for the name {final_name}")
        f.seek(offset * SECTOR)
        f.write(settled.ljust(len(region), b"\0"))


def _settle_vdi(path: Path, key: str) -> None:
    with open(path, "r+b") as f:
        f.seek(0x40)
        if f.read(4) != b"\x7f\x10\xda\xbe":
            raise VzError(f"{path.name}: not a VDI")
        f.seek(VDI_UUIDS)
        f.write(identity(key, "vdi-image").bytes + identity(key, "vdi-snapshot").bytes)
