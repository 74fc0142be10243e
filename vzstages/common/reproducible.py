"""The same key gives the same tree: what a build's clock and randomness leave in an image,
taken out at the end of every disk stage (reproducible-builds.org's SOURCE_DATE_EPOCH spec).

- One time per stage, from its inputs: the newest Release date of the archive states in the
  stage's chain (a suite's InRelease is named by digest in the key, so its date is too), else a
  fixed floor. Every command in the image gets it as SOURCE_DATE_EPOCH (dpkg, initramfs-tools,
  mmdebstrap honour it), every file and folder time newer than it is clamped to it, and every
  access time is the modification time.
- What randomness or the build's clock writes and nothing reads back: host keys (generated again
  on first boot), the machine id (emptied: systemd makes one on first boot), systemd's random
  seed, ldconfig's aux cache (inode numbers and ctimes), apt's binary caches (rebuilt on use),
  and the contents of logs (timestamps of this build).
"""

from __future__ import annotations

import array
import fcntl
import os
import stat
from collections.abc import Iterable
from pathlib import Path

from ..volume.disk import Tree
from ..volume.inroot import ImagePath
from ..volume.layout import Layout

EPOCH_FLOOR = 1672531200  # 2023-01-01T00:00:00Z: a stage whose chain names no archive state
# Bounds of a believable Release date: records and lists come from elsewhere.
EPOCH_CEILING = 2**33

MACHINE_BORN = ("var/lib/dbus/machine-id", "var/lib/systemd/random-seed")
REBUILT_CACHES = (
    "var/cache/ldconfig/aux-cache",
    "var/cache/apt/pkgcache.bin",
    "var/cache/apt/srcpkgcache.bin",
)


def settle(tree: Tree, layout: Layout, epoch: int) -> int:
    """The end of every disk stage: the tree as the same key would leave it on any host, at
    any time. Returns how many times were clamped."""
    forget_machine(tree.image)
    empty_logs(tree.image)
    return clamp_times(tree.root, tree.devices(layout), epoch)


def epoch_of(facts: dict[str, object]) -> int:
    """The parent stage's epoch, as its record says, or the floor."""
    value = facts.get("epoch")
    if isinstance(value, int) and not isinstance(value, bool) and EPOCH_FLOOR <= value < EPOCH_CEILING:
        return value
    return EPOCH_FLOOR


def forget_machine(root: ImagePath) -> None:
    """Nothing that identifies the machine that built the image, or its run."""
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    machine_id = root / "etc/machine-id"
    if machine_id.is_file() and not machine_id.is_symlink():
        machine_id.write_text("")  # empty, not absent: first boot makes one and knows it is first
    for path in (*MACHINE_BORN, *REBUILT_CACHES):
        (root / path).unlink(missing_ok=True)


def empty_logs(root: ImagePath) -> None:
    """Rotated logs removed, the others emptied (their owners and modes kept)."""
    for log in (root / "var/log").walk_files():
        if log.is_file() and not log.is_symlink():
            if log.suffix in (".gz", ".old") or (log.name[-1:].isdigit() and "." in log.name):
                log.unlink()
            else:
                log.write_bytes(b"")


def clamp_times(root: Path, devices: Iterable[int], epoch: int) -> int:
    """Every modification time newer than `epoch` set to it, and every access time to the
    modification time: how a file was made (dpkg, a tar of a kept base system, a maintainer
    script) leaves access times that differ, and nothing in an image depends on them. Only on the
    image's own filesystems (not /proc, /sys, /dev or the package cache bound into the tree);
    returns how many entries changed. fwalk works on folder descriptors and enters no symlink; a
    folder's times are set through its own descriptor once it has been listed, since listing it
    again would move its access time."""
    own = set(devices)
    limit = epoch * 1_000_000_000

    def clamp(st: os.stat_result, target: str | int, dir_fd: int | None) -> int:
        mtime = min(st.st_mtime_ns, limit)
        if (st.st_atime_ns, st.st_mtime_ns) == (mtime, mtime):
            return 0
        try:
            os.utime(target, ns=(mtime, mtime), dir_fd=dir_fd, follow_symlinks=dir_fd is None)
        except PermissionError:
            if not (isinstance(target, str) and stat.S_ISREG(st.st_mode)):
                raise
            retime_immutable(target, dir_fd, mtime)
        return 1

    changed = 0
    for _folder, folders, names, fd in os.fwalk(root):
        here = os.fstat(fd)
        if here.st_dev not in own:
            folders.clear()
            continue
        changed += clamp(here, fd, None)
        subfolders = []
        for name in (*folders, *names):
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            if st.st_dev not in own:
                continue
            if stat.S_ISDIR(st.st_mode):
                subfolders.append(name)  # clamped when it is walked
            else:
                changed += clamp(st, name, fd)
        folders[:] = subfolders
    return changed


# Linux's inode flags (linux/fs.h): a file marked immutable or append-only refuses new times.
FS_IOC_GETFLAGS, FS_IOC_SETFLAGS = 0x80086601, 0x40086602
FS_LOCKED_FL = 0x00000010 | 0x00000020  # immutable, append-only


def retime_immutable(name: str, dir_fd: int | None, mtime: int) -> None:
    """New times for a file marked immutable (extlinux marks ldlinux.sys, whose blocks its boot
    sector names): the flags are lifted for the change and put back. No block moves."""
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
    try:
        flags = array.array("i", [0])
        fcntl.ioctl(fd, FS_IOC_GETFLAGS, flags)
        locked = flags[0] & FS_LOCKED_FL
        if not locked:
            raise PermissionError(f"{name}: its times cannot be set")
        fcntl.ioctl(fd, FS_IOC_SETFLAGS, array.array("i", [flags[0] & ~FS_LOCKED_FL]))
        try:
            os.utime(fd, ns=(mtime, mtime))
        finally:
            fcntl.ioctl(fd, FS_IOC_SETFLAGS, flags)
    finally:
        os.close(fd)
