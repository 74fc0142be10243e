"""Opening a path inside a folder as if chrooted into it: with openat2(RESOLVE_IN_ROOT) where the
kernel has it, else by walking the path one component at a time with O_NOFOLLOW and resolving
each symlink against the root, which is the same rule. `..` stops at the root. `ImagePath`
(inroot.py) builds every operation on the image's tree on `open_in_root`.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
from pathlib import Path

O_PATH = getattr(os, "O_PATH", 0o10000000)
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_IN_ROOT = 0x10
SYS_OPENAT2 = 437  # the same number on every architecture (a syscall added after 5.1)
MAX_SYMLINKS = 40
# openat2 with RESOLVE_IN_ROOT fails with EAGAIN when any rename on the system races a `..` step.
OPENAT2_ATTEMPTS = 8

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class _OpenHow(ctypes.Structure):
    _fields_ = (("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64))


# Set to False when the kernel (or a container's seccomp filter) refuses openat2.
use_openat2 = True


class OutsideImage(OSError):
    """A path that would have to leave the image to resolve (only a bug can ask for one)."""


def _openat2(root_fd: int, rel: str, flags: int, mode: int) -> int:
    how = _OpenHow(
        flags | os.O_CLOEXEC, mode if flags & os.O_CREAT else 0, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS
    )
    fd = _libc.syscall(SYS_OPENAT2, root_fd, os.fsencode(rel), ctypes.byref(how), ctypes.sizeof(how))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), rel)
    return int(fd)


def _walk(root_fd: int, rel: str, flags: int, mode: int) -> int:
    """openat2(RESOLVE_IN_ROOT) in user space: each step O_NOFOLLOW from the last directory."""
    stack = [os.dup(root_fd)]  # directory fds from the root down to the current directory
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    links = 0
    try:
        while parts:
            name = parts.pop(0)
            if name == "..":
                if len(stack) > 1:
                    os.close(stack.pop())
                continue
            last = not parts
            try:
                st = os.stat(name, dir_fd=stack[-1], follow_symlinks=False)
            except FileNotFoundError:
                if last and flags & os.O_CREAT:
                    return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=stack[-1])
                raise
            if stat.S_ISLNK(st.st_mode) and not (last and flags & os.O_NOFOLLOW):
                links += 1
                if links > MAX_SYMLINKS:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), rel)
                target = os.readlink(name, dir_fd=stack[-1])
                if target.startswith("/"):
                    while len(stack) > 1:
                        os.close(stack.pop())
                parts = [p for p in target.split("/") if p not in ("", ".")] + parts
                continue
            if last:
                return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=stack[-1])
            stack.append(
                os.open(name, O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=stack[-1])
            )
        return os.dup(stack[-1])  # the path named the root itself
    finally:
        for fd in stack:
            os.close(fd)


def open_in_root(root: Path, rel: str, flags: int, mode: int = 0o644) -> int:
    """An fd for `rel` resolved inside `root`, as open(2) with `flags` would give it."""
    global use_openat2
    root_fd = os.open(root, O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for _attempt in range(OPENAT2_ATTEMPTS if use_openat2 else 0):
            try:
                return _openat2(root_fd, rel, flags, mode)
            except OSError as exc:
                if exc.errno == errno.EAGAIN:
                    continue  # a rename somewhere on the host raced a `..`: the kernel asks to retry
                if exc.errno not in (errno.ENOSYS, errno.EPERM):
                    raise
                use_openat2 = False
                break
        # The user-space walk applies the same rule and is not subject to the rename race.
        return _walk(root_fd, rel, flags, mode)
    finally:
        os.close(root_fd)
