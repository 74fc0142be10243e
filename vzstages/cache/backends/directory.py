"""A shared folder as a remote cache's backend: an NFS or CIFS mount many teams already have
(`--remote /mnt/team-cache` or `file:///mnt/team-cache`).

Safe for several hosts writing at once: an object is written under a hidden temporary name in
its own folder, fsynced, then renamed into place, so a reader sees a whole object or none and
two writers of one name leave one of them whole. Listings skip the temporary names. The folder
is as untrusted as a bucket: the remote checks what it reads exactly as it does for S3
(signatures over the bytes, sizes, digests), and a FIFO or a device planted there is refused,
never read.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import stat
import time
from collections.abc import Iterator
from pathlib import Path

from ...runid import run_id
from . import BackendError, Readable

# The store itself is gone or refuses us (a stale NFS handle, an unmounted share): no point in
# asking it again this run.
_UNREACHABLE = {errno.ENOENT, errno.ESTALE, errno.EIO, errno.EACCES, errno.EPERM, errno.ENOTCONN}


class DirectoryBackend:
    def __init__(self, root: Path):
        self.root = root

    def _path(self, name: str) -> Path:
        parts = name.split("/")
        if any(p in ("", ".", "..") or p.startswith(".") for p in parts):
            raise BackendError(f"{name!r} is not an object name")
        return self.root.joinpath(*parts)

    @contextlib.contextmanager
    def _translated(self, what: str) -> Iterator[None]:
        try:
            if not self.root.is_dir():
                raise BackendError(f"{self.root} is not a folder (not mounted?)", unreachable=True)
            yield
        except BackendError:
            raise
        except OSError as exc:
            gone = exc.errno in _UNREACHABLE and not self.root.is_dir()
            raise BackendError(f"{what}: {exc.strerror or exc}", unreachable=gone) from None

    def _open_regular(self, name: str) -> int | None:
        """An fd of the object if it is a regular file; None if there is no such object.
        O_NONBLOCK: a FIFO planted under an object's name must not hang the build."""
        try:
            fd = os.open(self._path(name), os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            return None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise BackendError(f"{name} is not a regular file")
        return fd

    def exists(self, name: str) -> bool:
        with self._translated(f"looking for {name}"):
            return self._path(name).is_file()

    def read_small(self, name: str, limit: int, seconds: float) -> bytes | None:
        with self._translated(f"reading {name}"):
            fd = self._open_regular(name)
            if fd is None:
                return None
            with os.fdopen(fd, "rb") as f:
                return f.read(limit + 1)

    @contextlib.contextmanager
    def stream(self, name: str, seconds: float) -> Iterator[Readable]:
        with self._translated(f"reading {name}"):
            fd = self._open_regular(name)
            if fd is None:
                raise BackendError(f"{name} is not there")
            with os.fdopen(fd, "rb") as f:
                yield f

    def _write(self, name: str, fill: object, exclusive: bool = False) -> bool:
        final = self._path(name)
        final.parent.mkdir(parents=True, exist_ok=True)
        # Unique per writer, not per process: two hosts may share a pid and start time (identical
        # CI containers), and one process may push from several threads.
        tmp = final.with_name(f".{final.name}.{run_id()}-{secrets.token_hex(8)}.partial")
        try:
            with open(tmp, "wb") as out:
                if isinstance(fill, bytes):
                    out.write(fill)
                else:
                    with open(fill, "rb") as source:  # type: ignore[call-overload]
                        shutil.copyfileobj(source, out, 1 << 22)
                out.flush()
                os.fsync(out.fileno())
            if not exclusive:
                os.replace(tmp, final)
                return True
            try:
                os.link(tmp, final)  # atomic, and it fails where the name exists (NFS too)
            except FileExistsError:
                return False
            return True
        finally:
            tmp.unlink(missing_ok=True)

    def upload(self, name: str, path: Path) -> None:
        with self._translated(f"writing {name}"):
            self._write(name, path)

    def put(self, name: str, data: bytes) -> None:
        with self._translated(f"writing {name}"):
            self._write(name, data)

    def create(self, name: str, data: bytes) -> bool:
        with self._translated(f"writing {name}"):
            return self._write(name, data, exclusive=True)

    def listing(self, folder: str) -> Iterator[tuple[str, float]]:
        with self._translated(f"listing {folder}"):
            base = self._path(folder)
            if not base.is_dir():
                return
            for entry in sorted(os.scandir(base), key=lambda e: e.name):
                if entry.name.startswith(".") or not entry.is_file(follow_symlinks=False):
                    continue
                yield entry.name, entry.stat(follow_symlinks=False).st_mtime

    def sweep(self, older_than: float) -> int:
        # The writer may be on another host: its pid says nothing here, the file's age does.
        cutoff, swept = time.time() - older_than, 0
        with self._translated("sweeping partial files"):
            for folder in ("blobs", "records", "archive"):
                base = self._path(folder)
                for entry in os.scandir(base) if base.is_dir() else ():
                    partial = entry.name.startswith(".") and entry.name.endswith(".partial")
                    if partial and entry.stat(follow_symlinks=False).st_mtime < cutoff:
                        os.unlink(entry.path)
                        swept += 1
        return swept

    def delete(self, name: str) -> None:
        with self._translated(f"deleting {name}"):
            self._path(name).unlink(missing_ok=True)
