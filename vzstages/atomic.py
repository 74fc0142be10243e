"""Files that appear whole or not at all: written aside, fsynced, then renamed into place, so a
crash or an error never leaves a half-written checkpoint, record or image under its final name."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from .errors import VzError


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish_file(tmp: Path, final: Path) -> None:
    """Make `tmp` durable, then atomically give it its final name."""
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, final)
    fsync_dir(final.parent)


@contextlib.contextmanager
def atomic_output(final: Path, mode: int = 0o644) -> Iterator[Path]:
    """A path to write `final`'s content to: it takes `final`'s name (fsynced, renamed) only if
    the block completes, so a crash or an error never leaves a half-written file there."""
    tmp = final.with_name(f".{final.name}.{os.getpid()}.partial")
    tmp.unlink(missing_ok=True)
    try:
        yield tmp
        if tmp.is_dir():
            raise VzError(f"{tmp}: expected a file")
        os.chmod(tmp, mode)
        publish_file(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    with atomic_output(path, mode) as tmp:
        tmp.write_text(text)
