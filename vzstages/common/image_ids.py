"""The identities qemu-img writes into an image file from its clock and randomness, made stable:
the same key gives the same file.

- vmdk (monolithicSparse): the descriptor's content id (CID) is random, and its extent line names
  the file qemu-img wrote (the image's temporary name): the id comes from the key, the extent
  names the image's final name.
- vdi: the image and last-snapshot UUIDs are random: both come from the key.
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
_EXTENT = re.compile(rb'^(RW \d+ SPARSE )"[^"\n]*"$', re.M)


def settle(fmt: str, path: Path, final_name: str, key: str) -> None:
    if fmt == "vmdk":
        _settle_vmdk(path, final_name, key)
    elif fmt == "vdi":
        _settle_vdi(path, key)


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
