"""Read a qcow2 header without qemu: is it one, and what is it backed by?

A checkpoint is untrusted input (a shared folder, a remote cache). Its header names its backing
file, and qemu opens whatever that names: a tampered one could name any host file, or a
`json:` or network URL. The store accepts a checkpoint only if its backing file is exactly the
parent checkpoint's name and it has no external data file; this checks that before qemu runs.
"""

from __future__ import annotations

import struct
from pathlib import Path

MAGIC = b"QFI\xfb"
EXTERNAL_DATA_FILE_BIT = 1 << 2
EXT_END = 0
EXT_DATA_FILE = 0x44415441
MAX_BACKING_NAME = 1023


class Qcow2Error(ValueError):
    pass


def backing_file(path: Path) -> str | None:
    """The backing file the header names, or None; Qcow2Error if it is not a plain qcow2."""
    try:
        with open(path, "rb") as f:
            header = f.read(4096)
            size = f.seek(0, 2)
    except OSError as exc:
        raise Qcow2Error(f"cannot read: {exc.strerror}") from None
    if len(header) < 72 or header[:4] != MAGIC:
        raise Qcow2Error("not a qcow2 image")
    version, offset, length = struct.unpack(">IQI", header[4:20])
    if version not in (2, 3):
        raise Qcow2Error(f"qcow2 version {version}")
    if version == 3:
        if len(header) < 104:
            raise Qcow2Error("truncated header")
        (incompatible,) = struct.unpack(">Q", header[72:80])
        if incompatible & EXTERNAL_DATA_FILE_BIT:
            raise Qcow2Error("it keeps its data in an external file")
        (header_length,) = struct.unpack(">I", header[100:104])
        _check_extensions(header, header_length)
    if offset == 0:
        return None
    if length == 0 or length > MAX_BACKING_NAME or offset + length > size:
        raise Qcow2Error("a malformed backing file name")
    with open(path, "rb") as f:
        f.seek(offset)
        raw = f.read(length)
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise Qcow2Error("a backing file name that is not text") from None


def _check_extensions(header: bytes, start: int) -> None:
    pos = start
    while pos + 8 <= len(header):
        kind, length = struct.unpack(">II", header[pos : pos + 8])
        if kind == EXT_END:
            return
        if kind == EXT_DATA_FILE:
            raise Qcow2Error("it names an external data file")
        pos += 8 + ((length + 7) & ~7)


def check_backing(path: Path, expected: str | None) -> str | None:
    """None if `path` is a qcow2 backed by exactly `expected` (a file name beside it, or
    nothing), else what is wrong with it."""
    try:
        found = backing_file(path)
    except Qcow2Error as exc:
        return str(exc)
    if found != expected:
        return f"backed by {found!r}, not {expected!r}"
    return None
