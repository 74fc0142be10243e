"""Paths inside the mounted image, resolved as if chrooted: the image's own symlinks never lead out.

The image's tree is untrusted input. An absolute symlink in it (`etc/machine-id -> /etc/machine-id`,
planted by a copied folder or a package) would make a plain host-side write land on the build host.
Every operation here resolves its path inside the image root, as chroot would (confined.py).

`ImagePath` has the subset of pathlib's API that tasks use, so task code reads like pathlib code.
It has no `__fspath__`: handing it to open(), shutil or a command line is a type error, not a
silent escape. `host_path()` gives the resolved host path (always inside the root) for commands
and mounts that need one.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from ..bounded import read_fd
from .confined import O_PATH, OutsideImage, open_in_root

# What a task reads of the image is a configuration file or a package list, never this large.
MAX_FILE_BYTES = 64 << 20


class ImagePath:
    """A path inside the image rooted at `root` (a folder on the build host)."""

    def __init__(self, root: Path, rel: str | PurePosixPath = ""):
        rel = PurePosixPath(str(rel).lstrip("/"))
        if ".." in rel.parts:
            raise ValueError(f"{rel}: paths inside the image are written without '..'")
        self.root = root
        self.rel = rel

    # --- naming -----------------------------------------------------------------------------
    def __truediv__(self, other: str | PurePosixPath) -> ImagePath:
        return ImagePath(self.root, self.rel / str(other).lstrip("/"))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ImagePath) and (self.root, self.rel) == (other.root, other.rel)

    def __hash__(self) -> int:
        return hash((self.root, self.rel))

    def __repr__(self) -> str:
        return f"ImagePath({str(self.root)!r}, {self.image_path!r})"

    def __str__(self) -> str:
        return self.image_path

    @property
    def image_path(self) -> str:
        """The path as the image sees it: /etc/hostname."""
        return "/" + str(self.rel) if str(self.rel) != "." else "/"

    @property
    def name(self) -> str:
        return self.rel.name

    @property
    def suffix(self) -> str:
        return self.rel.suffix

    @property
    def stem(self) -> str:
        return self.rel.stem

    @property
    def parent(self) -> ImagePath:
        return ImagePath(self.root, self.rel.parent)

    def _rel(self) -> str:
        return str(self.rel) if str(self.rel) != "." else "."

    # --- resolution -------------------------------------------------------------------------
    def _open(self, flags: int, mode: int = 0o644) -> int:
        return open_in_root(self.root, self._rel(), flags, mode)

    def _parent_fd(self) -> tuple[int, str]:
        """The resolved parent folder (an O_PATH fd) and the last component's name."""
        if not self.rel.name:
            raise OutsideImage(errno.EINVAL, "the image root has no parent", "/")
        fd = open_in_root(self.root, str(self.rel.parent), O_PATH | os.O_DIRECTORY)
        return fd, self.rel.name

    def host_path(self) -> Path:
        """Where this path resolves on the build host (always inside the image root)."""
        fd = self._open(O_PATH)
        try:
            real = Path(os.readlink(f"/proc/self/fd/{fd}"))
        finally:
            os.close(fd)
        root = self.root.resolve()
        if real != root and root not in real.parents:
            raise OutsideImage(errno.EXDEV, f"{self.image_path} resolves outside the image", str(real))
        return real

    # --- queries ----------------------------------------------------------------------------
    def lstat(self) -> os.stat_result:
        fd, name = self._parent_fd()
        try:
            return os.stat(name, dir_fd=fd, follow_symlinks=False)
        finally:
            os.close(fd)

    def stat(self) -> os.stat_result:
        fd = self._open(O_PATH)
        try:
            return os.fstat(fd)
        finally:
            os.close(fd)

    def _mode(self, follow: bool) -> int | None:
        try:
            return (self.stat() if follow else self.lstat()).st_mode
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return None
            raise

    def exists(self) -> bool:
        return self._mode(follow=True) is not None

    def is_file(self) -> bool:
        mode = self._mode(follow=True)
        return mode is not None and stat.S_ISREG(mode)

    def is_dir(self) -> bool:
        mode = self._mode(follow=True)
        return mode is not None and stat.S_ISDIR(mode)

    def is_symlink(self) -> bool:
        mode = self._mode(follow=False) if self.rel.name else None
        return mode is not None and stat.S_ISLNK(mode)

    def readlink(self) -> str:
        fd, name = self._parent_fd()
        try:
            return os.readlink(name, dir_fd=fd)
        finally:
            os.close(fd)

    def iterdir(self) -> Iterator[ImagePath]:
        fd = self._open(os.O_RDONLY | os.O_DIRECTORY)
        try:
            names = sorted(os.listdir(fd))
        finally:
            os.close(fd)
        return iter([self / name for name in names])

    def glob(self, pattern: str) -> Iterator[ImagePath]:
        """One level: `ssh_host_*`, `vmlinuz-*`."""
        if "/" in pattern:
            raise ValueError("ImagePath.glob matches names in one folder")
        if not self.is_dir():
            return iter([])
        return iter([p for p in self.iterdir() if fnmatch.fnmatchcase(p.name, pattern)])

    def walk_files(self) -> Iterator[ImagePath]:
        """Every entry below this folder that is not a folder, without following symlinks."""
        for entry in self.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                yield from entry.walk_files()
            else:
                yield entry

    # --- reading and writing ----------------------------------------------------------------
    def read_bytes(self, limit: int = MAX_FILE_BYTES) -> bytes:
        """The file's content: OSError for anything but a regular file, or one over `limit`."""
        return read_fd(self._open(os.O_RDONLY | os.O_NONBLOCK), limit, str(self))

    def read_text(self, errors: str = "strict") -> str:
        return self.read_bytes().decode("utf-8", errors=errors)

    def write_bytes(self, data: bytes, mode: int | None = None) -> None:
        fd = self._open(os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644 if mode is None else mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if mode is not None:
                os.fchmod(f.fileno(), mode)

    def write_text(self, text: str, mode: int | None = None) -> None:
        self.write_bytes(text.encode(), mode)

    def chmod(self, mode: int) -> None:
        fd = self._open(os.O_RDONLY)
        try:
            os.fchmod(fd, mode)
        finally:
            os.close(fd)

    def mkdir(self, mode: int = 0o755, parents: bool = False, exist_ok: bool = False) -> None:
        if not self.rel.name:  # the image root is always there
            if exist_ok:
                return
            raise FileExistsError(errno.EEXIST, "the image root exists", "/")
        if parents and str(self.rel.parent) != "." and not self.parent.is_dir():
            self.parent.mkdir(mode, parents=True, exist_ok=True)
        fd, name = self._parent_fd()
        try:
            os.mkdir(name, mode, dir_fd=fd)
        except FileExistsError:
            if not (exist_ok and self.is_dir()):
                raise
        finally:
            os.close(fd)

    def _parent_fd_if_there(self, missing_ok: bool) -> tuple[int, str] | None:
        try:
            return self._parent_fd()
        except FileNotFoundError:
            if missing_ok:
                return None
            raise

    def unlink(self, missing_ok: bool = False) -> None:
        parent = self._parent_fd_if_there(missing_ok)
        if parent is None:
            return
        fd, name = parent
        try:
            os.unlink(name, dir_fd=fd)
        except FileNotFoundError:
            if not missing_ok:
                raise
        finally:
            os.close(fd)

    def rmdir(self) -> None:
        fd, name = self._parent_fd()
        try:
            os.rmdir(name, dir_fd=fd)
        finally:
            os.close(fd)

    def rmtree(self, missing_ok: bool = True) -> None:
        """Remove a folder and everything below it; a symlink is removed, never followed."""
        parent = self._parent_fd_if_there(missing_ok)
        if parent is None:
            return
        fd, name = parent
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                shutil.rmtree(name, dir_fd=fd)
            else:
                os.unlink(name, dir_fd=fd)
        except FileNotFoundError:
            if not missing_ok:
                raise
        finally:
            os.close(fd)

    def symlink_to(self, target: str) -> None:
        fd, name = self._parent_fd()
        try:
            os.symlink(target, name, dir_fd=fd)
        finally:
            os.close(fd)

    def replace(self, target: ImagePath) -> None:
        src_fd, src_name = self._parent_fd()
        try:
            dst_fd, dst_name = target._parent_fd()
            try:
                os.replace(src_name, dst_name, src_dir_fd=src_fd, dst_dir_fd=dst_fd)
            finally:
                os.close(dst_fd)
        finally:
            os.close(src_fd)

    def copy_from(self, source: Path, mode: int | None = None) -> None:
        """Copy a host file's content here (the host side is the user's input, read as given)."""
        if not stat.S_ISREG(os.stat(source).st_mode):
            raise ValueError(f"{source}: not a regular file")
        with open(source, "rb") as src:
            fd = self._open(os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            with os.fdopen(fd, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
                os.fchmod(dst.fileno(), stat.S_IMODE(os.stat(source).st_mode) if mode is None else mode)

    def copy_tree_from(self, source: Path) -> None:
        """Copy a host file or folder here, as `cp -a` would, but resolved inside the image:
        folders merge into folders, symlinks are copied as symlinks, modes are kept, and what
        is in the way of a file or a link (a file, a link) is replaced, never written through."""
        st = source.lstat()
        if stat.S_ISDIR(st.st_mode):
            if not self.is_dir():
                if self.is_symlink() or self.exists():
                    self.unlink()
                self.mkdir(stat.S_IMODE(st.st_mode))
            for child in sorted(os.listdir(source)):
                (self / child).copy_tree_from(source / child)
            if self.rel.name:  # the image root keeps its own mode
                self.chmod(stat.S_IMODE(st.st_mode))
            return
        if self.is_dir() and not self.is_symlink():
            raise IsADirectoryError(errno.EISDIR, "a folder is in the way", self.image_path)
        if self.is_symlink():
            self.unlink()
        if stat.S_ISLNK(st.st_mode):
            self.unlink(missing_ok=True)
            self.symlink_to(os.readlink(source))
        elif stat.S_ISREG(st.st_mode):
            self.copy_from(source)
        else:
            raise ValueError(f"{source}: not a file, folder or symlink")
