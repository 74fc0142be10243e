"""Files that appear whole or not at all: written aside, fsynced, then renamed into place, so a
crash or an error never leaves a half-written checkpoint, record or image under its final name."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path

from .errors import VzError
from .runid import is_alive, run_id


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


def remove_dead_partials(final: Path) -> None:
    """What a killed writer of `final` left aside (SIGKILL, power lost: nothing unwound). A
    partial whose writer still runs (another build writing the same file) is left alone."""
    # The writer's run id (pid-start time), or the pid alone as older versions wrote it; nothing
    # else, so another file's partial (`.NAME.json.RUN.partial`) is never taken for this one's.
    partial = re.compile(rf"\.{re.escape(final.name)}\.(?P<run>[0-9]+(-[0-9]+|-None)?)\.partial")
    with contextlib.suppress(OSError):
        for entry in os.scandir(final.parent):
            match = partial.fullmatch(entry.name)
            if match and not is_alive(match["run"]):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


@contextlib.contextmanager
def atomic_output(final: Path, mode: int = 0o644) -> Iterator[Path]:
    """A path to write `final`'s content to: it takes `final`'s name (fsynced, renamed) only if
    the block completes, so a crash or an error never leaves a half-written file there."""
    remove_dead_partials(final)
    tmp = final.with_name(f".{final.name}.{run_id()}.partial")
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
