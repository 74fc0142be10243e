"""The environment a stage's tasks run in: the overlay, its export, loops and mounts, the build
host's DNS in the chroot, the tasks in order and the counter tasks of those that ran on failure.

What this module (and all it imports) does shapes every checkpoint, so its code enters every
stage's key (compiler/code.py, RUNTIME_ROOTS). Deciding whether to run a stage, and publishing
its checkpoint, is the runner's (runner.py), whose code does not change what a stage holds.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from .common import reproducible
from .common.package_cache import package_cache
from .errors import VzError
from .evidence import inventory
from .host import Host
from .model.info import BuildInfo
from .model.view import ManifestView
from .shell_on_error import offer_shell
from .volume.disk import AttachedDisk, attached, exported, mounted
from .volume.inroot import ImagePath
from .volume.rewrite import CLOCK_SLACK_NS, Scans, rewrite, scan_mounted
from .volume.runs import run_folder

if TYPE_CHECKING:
    from .manifest import Manifest
    from .model.task import Task

progress = logging.getLogger("vzstages.progress")
log = logging.getLogger("vzstages.runner")


def create_overlay(host: Host, overlay: Path, parent: Path | None, size: int) -> None:
    """A new qcow2 for the stage: empty, or on top of its parent's checkpoint (a scratch overlay
    in a run's folder, which names it by its full path)."""
    if parent is None:
        host.run(["qemu-img", "create", "-q", "-f", "qcow2", str(overlay), str(size)])
    else:
        backing = str(parent.resolve())
        host.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", backing, str(overlay)])


def run_disk_stage(
    tasks: Sequence[type[Task]],
    manifest: Manifest,
    info: BuildInfo,
    overlay: Path,
    timings: dict[str, float],
    *,
    parent: Path | None,
    scratch: Path | None = None,
) -> None:
    """Write the stage's checkpoint to `overlay`. The first stage (no parent) partitions and
    formats a new disk. Every other one runs on a scratch overlay of its parent (in `scratch`,
    else in the run's folder): mounted, the tasks run, the tree settled and trimmed, all taken
    down again, also on failure; then its changes are written again onto the parent's bytes in
    an order of their own (rewrite.py)."""
    host = info.host
    with run_folder(info.runs, info.stage) as folder:
        if parent is None:
            create_overlay(host, overlay, None, info.layout.disk_size)
            with exported(host, overlay, folder) as raw, attached(host, raw, info.layout) as disk:
                info.disk = disk
                run_tasks(tasks, manifest, info, timings)
            return
        work = scratch or folder
        overlay_of_stage = work / "scratch.qcow2"
        create_overlay(host, overlay_of_stage, parent, info.layout.disk_size)
        clock = time.time_ns(), time.monotonic_ns()
        with exported(host, overlay_of_stage, folder) as raw, attached(host, raw, info.layout) as disk:
            info.disk = disk
            scans = run_in_tree(tasks, manifest, info, disk, folder, timings, since_ns=clock[0])
        _check_clock(info.stage, clock)
        started = time.monotonic()
        how = rewrite(
            host, info.layout, parent, overlay_of_stage, overlay, folder, epoch=info.epoch, scans=scans
        )
        timings["rewrite"] = round(time.monotonic() - started, 3)
        for name, writer in how.items():
            log.info("stage %s, %s: written by %s", info.stage, name, writer)


def run_in_tree(
    tasks: Sequence[type[Task]],
    manifest: Manifest,
    info: BuildInfo,
    disk: AttachedDisk,
    folder: Path,
    timings: dict[str, float],
    *,
    since_ns: int,
) -> Scans:
    """The tasks in the mounted tree, then the tree settled; returns its filesystems' entries
    (what the rewrite compares with the parent's), read before it is unmounted."""
    with mounted(info.host, disk, folder / "root") as tree:
        info.tree = tree
        with host_dns(tree.image):
            try:
                run_tasks(tasks, manifest, info, timings)
            except Exception:
                offer_shell(info, tree, manifest.path, info.parent_stage)
                raise
        started = time.monotonic()  # the image's own resolv.conf is back: /etc is as left
        reproducible.settle(tree, info.layout, info.epoch)
        timings["settle"] = round(time.monotonic() - started, 3)
        started = time.monotonic()
        info.facts.update(inventory.take(tree.image, package_cache(info), info.facts))
        timings["inventory"] = round(time.monotonic() - started, 3)
        started = time.monotonic()
        scans = scan_mounted(info.host, tree.root, info.layout, folder, since_ns)
        timings["scan"] = round(time.monotonic() - started, 3)
        tree.trim(info.layout)
        return scans


def _check_clock(stage: str, clock: tuple[int, int]) -> None:
    """What the stage changed is found by inode change times: a clock set back during the
    stage could hide a change, so such a stage is not published."""
    wall, monotonic = time.time_ns() - clock[0], time.monotonic_ns() - clock[1]
    if wall < monotonic - CLOCK_SLACK_NS:
        raise VzError(f"stage {stage}: the system clock was set back while it ran; run the build again")


def batches(tasks: Sequence[type[Task]]) -> list[list[type[Task]]]:
    """The tasks in order, those of one batch kind that follow each other grouped."""
    grouped: list[list[type[Task]]] = []
    for task in tasks:
        if grouped and task.batch is not None and grouped[-1][-1].batch == task.batch:
            grouped[-1].append(task)
        else:
            grouped.append([task])
    return grouped


def run_tasks(
    tasks: Sequence[type[Task]], manifest: Manifest, info: BuildInfo, timings: dict[str, float]
) -> None:
    done: list[type[Task]] = []
    try:
        for batch in batches(tasks):
            started = time.monotonic()
            for task in batch:
                progress.info("  %s: %s", info.stage, task.description or task.name())
                log.info("task %s", task.name())
            runs = [(t, replace(info, manifest=ManifestView(manifest, t.name(), t.reads))) for t in batch]
            if len(batch) == 1:
                batch[0].run(runs[0][1])
            else:
                batch[0].run_batch(runs)
            for task in batch:
                timings[task.name()] = round((time.monotonic() - started) / len(batch), 3)
            done += batch
    except BaseException:
        for task in reversed(done):
            try:
                task.rollback(replace(info, manifest=ManifestView(manifest, task.name(), task.reads)))
            except Exception:
                log.exception("rollback of %s failed", task.name())
        raise


@contextlib.contextmanager
def host_dns(image: ImagePath) -> Iterator[None]:
    """Give the chroot the build host's DNS for the stage, and put the image's own back after.

    The image's resolv.conf (often a symlink to systemd-resolved's stub) is moved aside, so no
    checkpoint ever holds the build host's resolver. If a package replaced ours during the stage,
    the package's version is kept.
    """
    etc = image / "etc"
    if not etc.is_dir():
        yield  # before debootstrap there is no /etc yet
        return
    conf, saved = etc / "resolv.conf", etc / ".resolv.conf.vzstages"
    host_conf = Path("/etc/resolv.conf")
    ours = host_conf.read_bytes() if host_conf.is_file() else b""
    had_own = conf.is_symlink() or conf.exists()
    if had_own:
        conf.replace(saved)
    conf.write_bytes(ours)
    try:
        yield
    finally:
        replaced = conf.is_symlink() or not conf.is_file() or conf.read_bytes() != ours
        if not replaced:
            conf.unlink()
            if had_own:
                saved.replace(conf)
        else:
            saved.unlink(missing_ok=True)
