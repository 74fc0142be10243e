"""Run folders, and reaping what a dead run left behind.

Each build process works under cache/runs/<pid>-<starttime>/: its FUSE export, its mount tree,
its daemon's pidfile. The start time makes the name unique even when pids are reused. A run folder
whose process is gone belongs to a dead run: its mounts, loop devices, daemon and temporary
overlays are removed before a new build starts. Live runs are never touched.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

from ..host import Host
from ..runid import is_alive, run_id
from .disk import kill_chroot_processes, mounts_under, stop_daemon

log = logging.getLogger("vzstages.volume")
RUN_NAME = re.compile(r"\d+-\d+", re.ASCII)  # runid.run_id(): pid and start time
TEMP_NAME = re.compile(r"\..+\.(?P<run>\d+-\d+)\.(qcow2|zst)", re.ASCII)


@contextlib.contextmanager
def run_folder(runs: Path, name: str) -> Iterator[Path]:
    folder = runs / run_id() / name
    folder.mkdir(parents=True, exist_ok=True)
    try:
        yield folder
    finally:
        if mounts_under(folder):
            # Never delete through a mount: that would delete the image's (or the host's) files.
            log.error("%s still has mounts; leaving it for the next run to clean up", folder)
        else:
            shutil.rmtree(folder, ignore_errors=True)
        with contextlib.suppress(OSError):
            folder.parent.rmdir()


@contextlib.contextmanager
def tmpfs_folder(host: Host, runs: Path, name: str, size: str | None) -> Iterator[Path]:
    """A tmpfs of the run's own (half of memory unless `size` says), unmounted on the way out."""
    with run_folder(runs, f"{name}-tmpfs") as folder:
        options = f"mode=0700,size={size}" if size else "mode=0700"
        host.run(["mount", "-t", "tmpfs", "-o", options, "vzstages", str(folder)])
        try:
            yield folder
        finally:
            host.run(["umount", str(folder)], check=False)
            if folder in mounts_under(folder):
                host.run(["umount", "--lazy", str(folder)], check=False)


def _loops_backed_by(prefix: Path) -> list[str]:
    found = []
    for backing in Path("/sys/block").glob("loop*/loop/backing_file"):
        with contextlib.suppress(OSError):
            if backing.read_text().strip().startswith(str(prefix) + "/"):
                found.append("/dev/" + backing.parent.parent.name)
    return found


def _real_dirs(folder: Path) -> list[Path]:
    """The folders directly in `folder`, never a symlink to one."""
    found = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            if entry.is_dir(follow_symlinks=False):
                found.append(Path(entry.path))
    return sorted(found)


def _pidfiles(folder: Path, depth: int = 2) -> list[Path]:
    """Every qsd.pid of a run: a stage's own export (RUN/STAGE/qsd.pid) and those its rewrite
    opens (RUN/STAGE/parent/qsd.pid ...), found without entering a symlink."""
    found = []
    for sub in _real_dirs(folder):
        if (sub / "qsd.pid").exists():
            found.append(sub / "qsd.pid")
        if depth > 1:
            found += _pidfiles(sub, depth - 1)
    return found


def leftovers(folder: Path) -> dict[str, list[str]]:
    """What is still attached under a run folder (used by reap and by tests)."""
    return {
        "mounts": [str(m) for m in mounts_under(folder)],
        "loops": _loops_backed_by(folder),
        "daemons": [str(p) for p in _pidfiles(folder)],
    }


def reap_folder(host: Host, folder: Path) -> None:
    for stage_folder in _real_dirs(folder):
        kill_chroot_processes(stage_folder / "root")
    # Deepest first, so /proc inside the tree goes before the tree; lazily if still busy.
    for mountpoint in sorted(mounts_under(folder), key=lambda p: len(p.parts), reverse=True):
        if mountpoint.name == "disk.raw":
            continue  # the FUSE export goes after its loops, with its daemon
        host.run(["umount", str(mountpoint)], check=False)
        if mountpoint in mounts_under(folder):
            host.run(["umount", "--lazy", str(mountpoint)], check=False)
    for device in _loops_backed_by(folder):
        host.run(["losetup", "--detach", device], check=False)
    for pidfile in _pidfiles(folder):
        stop_daemon(host, pidfile.parent / "disk.raw", pidfile)
    for raw in mounts_under(folder):
        host.run(["umount", "--lazy", str(raw)], check=False)
    if not mounts_under(folder):
        shutil.rmtree(folder, ignore_errors=True)


def reap(host: Host, runs: Path, stages: Path) -> list[str]:
    """Clean up after dead runs; return a line for each one cleaned."""
    cleaned = []
    if runs.is_dir():
        for folder in _real_dirs(runs):
            if RUN_NAME.fullmatch(folder.name) and not is_alive(folder.name):
                log.info("cleaning up after dead run %s", folder.name)
                reap_folder(host, folder)
                cleaned.append(f"run {folder.name}")
    if stages.is_dir():
        # Temporary files of a run are named `.WHAT.<run id>.<ext>` (an overlay, a pushed blob).
        for tmp in stages.glob(".*"):
            match = TEMP_NAME.fullmatch(tmp.name)
            owner = match["run"] if match else ""
            if match and not tmp.is_symlink() and tmp.is_file() and not is_alive(owner):
                tmp.unlink(missing_ok=True)
                cleaned.append(f"temporary overlay {tmp.name}")
    return cleaned
