"""Open a qcow2 overlay as a mounted tree, with no nbd and no device-mapper.

    qcow2 --qemu-storage-daemon/FUSE--> raw file --losetup -o OFFSET--> one loop per partition
          --mount--> root tree (+ /proc /sys /dev /dev/pts binds for the chroot)

Every step registers its undo on an ExitStack as soon as it succeeds, so a failure, Ctrl-C or
SIGTERM at any point unwinds exactly what was done, in reverse order. Everything a run creates
lives under its run folder (cache/runs/<pid>-<start>), which is how `reap` recognises a dead
run's leftovers.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import VzError
from ..host import Host, Result
from .inroot import ImagePath
from .layout import Layout, Partition

log = logging.getLogger("vzstages.volume")

BIND_MOUNTS = ("proc", "sys", "dev", "dev/pts")
# How a stage mounts its filesystems: a read writes nothing (no access times), so a stage's
# checkpoint holds only what it changed. (nodelalloc was tried for reproducible block placement:
# without delayed allocation ext4 colours each file's goal block by the writer's pid.)
BUILD_MOUNT_OPTIONS = dict.fromkeys(("ext2", "ext3", "ext4", "xfs"), "noatime")
_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")  # how /proc/self/mountinfo writes a space, a newline


@dataclass
class AttachedDisk:
    """The exported raw disk and the loop devices attached to it (lazily, by offset)."""

    host: Host
    raw: Path
    layout: Layout
    stack: contextlib.ExitStack
    loops: dict[str, str] = field(default_factory=dict)
    read_only: bool = False

    def _attach(self, label: str, offset: int, size: int | None) -> str:
        argv = ["losetup", "--find", "--show", "--offset", str(offset)]
        if self.read_only:
            argv.append("--read-only")
        if size is not None:
            argv += ["--sizelimit", str(size)]
        device = self.host.run([*argv, str(self.raw)]).output.strip()
        self.stack.callback(self._detach, device)
        self.loops[label] = device
        return device

    def _detach(self, device: str) -> None:
        self.host.run(["losetup", "--detach", device], check=False)

    def partition_device(self, part: Partition) -> str:
        """A loop device over one partition (the whole disk for an unpartitioned volume)."""
        if part.name not in self.loops:
            size = part.size if part.number is not None or part.logical else None
            self._attach(part.name, part.start, size)
        return self.loops[part.name]

    def whole_device(self) -> str:
        """A loop device over the whole disk, for writing a boot sector."""
        if "<disk>" not in self.loops:
            self._attach("<disk>", 0, None)
        return self.loops["<disk>"]


def _blockdevs(image: Path, fmt: str, writable: bool) -> list[str]:
    if not writable:
        return [
            "--blockdev",
            f"driver=file,node-name=file0,filename={image},read-only=on",
            "--blockdev",
            f"driver={fmt},node-name=disk0,file=file0,read-only=on",
        ]
    return [
        # discard=unmap on both nodes: on the qcow2 node alone, a trim frees clusters inside
        # the qcow2 but never punches them out of the file, and checkpoints keep every block
        # a stage wrote and deleted.
        "--blockdev",
        # cache.no-flush: the image's own fsyncs (dpkg's, apt's, every maintainer script's)
        # need not reach the disk; the checkpoint is fsynced once, when it is published.
        f"driver=file,node-name=file0,filename={image},cache.direct=off,cache.no-flush=on,discard=unmap",
        "--blockdev",
        f"driver={fmt},node-name=disk0,file=file0,discard=unmap",
    ]


@contextlib.contextmanager
def exported(
    host: Host, image: Path, run_dir: Path, fmt: str = "qcow2", writable: bool = True
) -> Iterator[Path]:
    """Export a disk image (a qcow2 overlay, or any format qemu reads) as a raw file through
    qemu-storage-daemon's FUSE export; read-only unless `writable`."""
    raw = run_dir / "disk.raw"
    pidfile = run_dir / "qsd.pid"
    raw.touch()
    host.run(
        [
            "qemu-storage-daemon",
            *_blockdevs(image, fmt, writable),
            "--export",
            f"type=fuse,id=export0,node-name=disk0,mountpoint={raw},writable={'on' if writable else 'off'}",
            "--pidfile",
            str(pidfile),
            "--daemonize",
        ]
    )
    try:
        yield raw
    finally:
        stop_daemon(host, raw, pidfile)
        raw.unlink(missing_ok=True)


def stop_daemon(host: Host, raw: Path, pidfile: Path) -> None:
    # qemu-storage-daemon (7.2) does not unmount its FUSE export on SIGTERM: unmount first, then
    # stop it and wait, so the qcow2 is closed and consistent before anyone renames it.
    host.run(["umount", str(raw)], check=False)
    pid = _daemon_pid(pidfile, raw)
    if pid is None:
        pidfile.unlink(missing_ok=True)
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(pid):
        log.warning("qemu-storage-daemon %s did not stop; killing it", pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    pidfile.unlink(missing_ok=True)


def _daemon_pid(pidfile: Path, raw: Path) -> int | None:
    """The pid in a run's qsd.pid, if that process is still the daemon exporting `raw`.

    After a reboot (or a long time) the number may belong to any process: it is signalled only
    if its command line is qemu-storage-daemon's with this run's export on it. The pidfile is
    read without following a symlink out of the run folder."""
    try:
        fd = os.open(pidfile, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd) as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                return None
            pid = int(f.read(32).strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    program = os.path.basename(cmdline[0]) if cmdline else b""
    if program != b"qemu-storage-daemon" or not any(os.fsencode(str(raw)) in arg for arg in cmdline):
        log.warning(
            "%s names process %s, which is not this run's qemu-storage-daemon: left alone", pidfile, pid
        )
        return None
    return pid


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie child of ours is dead for our purposes.
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z"):
            return False
    return True


@contextlib.contextmanager
def attached(host: Host, raw: Path, layout: Layout, read_only: bool = False) -> Iterator[AttachedDisk]:
    with contextlib.ExitStack() as stack:
        yield AttachedDisk(host, raw, layout, stack, read_only=read_only)


@dataclass
class Tree:
    """The mounted image. The chroot's /proc, /sys, /dev binds are added on first use: debootstrap
    must find an empty tree (it makes its own /dev entries), later stages need them at once."""

    host: Host
    root: Path  # the mountpoint: a folder of the run's own, so trusted; what is below it is not
    stack: contextlib.ExitStack
    bound: bool = False

    @property
    def image(self) -> ImagePath:
        """The image's tree, every path resolved inside it."""
        return ImagePath(self.root)

    def trim(self, layout: Layout) -> None:
        """Discard freed blocks: the qcow2 overlay then keeps only what the stage left behind,
        not every block it wrote and deleted (downloaded lists, replaced files)."""
        for part in layout.build_mounts():
            target = (self.image / (part.mountpoint or "/")).host_path()
            # ext4 frees a deleted file's blocks only when its journal commits: without the sync,
            # what the stage deleted last (apt's caches, say) is never trimmed and stays in every
            # checkpoint and image (160 MiB of kvm.yml's 1 GiB image).
            self.host.run(["sync", "--file-system", str(target)], check=False)
            self.host.run(["fstrim", str(target)], check=False)

    def devices(self, layout: Layout) -> list[int]:
        """The device numbers of the image's own filesystems, as mounted in the tree."""
        return [(self.image / (p.mountpoint or "/")).stat().st_dev for p in layout.build_mounts()]

    def bind(self, source: Path, inside: str) -> None:
        """Bind a host folder onto a folder of the image until the stage ends."""
        target = mount_point(self.image / inside)
        self.host.run(["mount", "--bind", str(source), str(target)])
        self.stack.callback(unmount, self.host, target)

    def chroot(self, argv: list[str], **kwargs: Any) -> Result:
        self._bind_system()
        return self.host.chroot(self.root, argv, **kwargs)

    def chroot_attached(self, argv: list[str]) -> int:
        """A command in the tree on the caller's terminal (vzstages shell); its exit status."""
        self._bind_system()
        return self.host.chroot_attached(self.root, argv)

    def _bind_system(self) -> None:
        """/proc, /sys and /dev in the tree, once; whatever runs there is killed on the way out."""
        if not self.bound:
            for name in BIND_MOUNTS:
                self.bind(Path(f"/{name}"), name)
            self.stack.callback(kill_chroot_processes, self.root)
            self.bound = True


def mount_point(path: ImagePath) -> Path:
    """A folder of the image to mount on, as the host path it resolves to inside the image.
    mount(8) follows symlinks on the host: a mount point must never be one."""
    if path.is_symlink():
        raise DiskError(f"the image's {path} is a symlink; vzstages mounts only on real folders")
    path.mkdir(parents=True, exist_ok=True)
    return path.host_path()


@contextlib.contextmanager
def mounted(host: Host, disk: AttachedDisk, root: Path) -> Iterator[Tree]:
    """Mount the partitions: root first, parents before children."""
    root.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        for part in disk.layout.build_mounts():
            target = root if part.name == "root" else mount_point(ImagePath(root) / (part.mountpoint or "/"))
            options = (
                ["-o", BUILD_MOUNT_OPTIONS[part.filesystem]] if part.filesystem in BUILD_MOUNT_OPTIONS else []
            )
            device = disk.partition_device(part)
            host.run(["mount", "-t", part.filesystem or "auto", *options, device, str(target)])
            stack.callback(unmount, host, target)
            if part.name == "root":
                # Unwound before the root itself: what an interrupted command mounted in the tree.
                stack.callback(unmount_strays, host, root)
        yield Tree(host, root, stack)


def unmount(host: Host, target: Path) -> None:
    result = host.run(["umount", str(target)], check=False)
    if result.returncode != 0:
        # Something still holds it (a daemon a maintainer script started): detach it lazily so
        # the rest of the teardown can go on, and say so.
        log.warning("umount %s failed (%s); detaching it lazily", target, result.output.strip())
        host.run(["umount", "--lazy", str(target)], check=False)


def mounts_under(prefix: Path) -> list[Path]:
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mountpoint = _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), line.split()[4])
        if mountpoint == str(prefix) or mountpoint.startswith(str(prefix) + "/"):
            found.append(Path(mountpoint))
    return found


def unmount_strays(host: Host, root: Path) -> None:
    """Unmount, deepest first, what is still mounted below the tree once its own binds are gone:
    the mounts of a command that was stopped before it could undo them (mmdebstrap's /proc, /dev)."""
    kill_chroot_processes(root)
    below = [m for m in mounts_under(root) if m != root]
    for mountpoint in sorted(below, key=lambda p: len(p.parts), reverse=True):
        log.warning("unmounting %s, left mounted by an interrupted command", mountpoint)
        unmount(host, mountpoint)


def kill_chroot_processes(root: Path) -> None:
    """Stop processes left running inside the chroot (gpg-agent, dirmngr ...). `root` is a run
    folder's mountpoint; a symlink there (planted, or left by anything) is never followed."""
    if root.is_symlink() or not root.is_dir():
        return
    real_root = str(root.resolve())
    if real_root == "/":
        return
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            proc_root = os.readlink(entry / "root")
        except OSError:
            continue
        if proc_root == real_root or proc_root.startswith(real_root + "/"):
            log.info("stopping process %s left in the chroot", entry.name)
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry.name), signal.SIGKILL)


class DiskError(VzError):
    pass


@contextlib.contextmanager
def opened_readonly(host: Host, checkpoint: Path, layout: Layout, folder: Path) -> Iterator[Tree]:
    """Mount a checkpoint's tree without changing it: the writes of mounting (journal replay,
    atime) go to a throw-away overlay in `folder`."""
    overlay = folder / "inspect.qcow2"
    host.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(checkpoint), str(overlay)])
    try:
        with (
            exported(host, overlay, folder) as raw,
            attached(host, raw, layout) as disk,
            mounted(host, disk, folder / "root") as tree,
        ):
            yield tree
    finally:
        overlay.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            (folder / "root").rmdir()  # rmdir, never rmtree: it refuses if anything is still there
