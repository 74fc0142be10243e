"""A disk stage's checkpoint, written again so that the same parent and the same tree give the
same bytes.

The stage runs on a scratch overlay of its parent, through the kernel. Its checkpoint is then a
new overlay of the same parent holding:
- for each ext2/3/4 filesystem the stage changed: the change, written by debugfs (delta.py);
- everywhere else on the disk (a partition table, grub's embedding area, an ESP written with
  mtools, a filesystem debugfs cannot write as the kernel did): the 4 KiB blocks of the scratch
  overlay that differ from the parent, as they are.
Last, `qemu-img convert` writes that overlay's clusters in disk order, so the checkpoint file does
not depend on the order its writes came in.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

from ..host import Host
from . import debugfs, delta
from .disk import AttachedDisk, attached, exported, mount_point, unmount
from .inroot import ImagePath
from .layout import Layout, Partition

log = logging.getLogger("vzstages.volume")

EXT = ("ext2", "ext3", "ext4")
Scans = dict[str, delta.Scan]  # by partition name
BLOCK = 4096
# A stage's start, as the kernel stamps inode change times: its coarse clock may lag ours.
CLOCK_SLACK_NS = 2 * 10**9


def rewrite(
    host: Host,
    layout: Layout,
    parent: Path,
    scratch: Path,
    out: Path,
    folder: Path,
    *,
    epoch: int,
    scans: Scans,
) -> dict[str, str]:
    """Write `out` (a qcow2 beside its parent, backed by its name) from the stage's `scratch`
    overlay (a new overlay beside it first); exports and mounts go in the run's `folder`;
    `scans` are its filesystems' entries (scan_mounted). Returns how each filesystem the stage
    changed was written: "libext2fs", or "kernel: why"."""
    work = scratch.parent / "rewrite.qcow2"
    host.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(parent.resolve()), str(work)]
    )
    changed = _own_ranges(host, scratch)
    how: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        disks = {
            name: stack.enter_context(_opened(host, image, folder / name, layout, writable=name == "out"))
            for name, image in (("parent", parent), ("scratch", scratch), ("out", work))
        }
        written: list[Partition] = []
        for part in layout.partitions:
            if part.filesystem not in EXT or not _overlaps(changed, part.start, part.size):
                continue
            if layout.bootloader == "extlinux" and part == layout.boot:
                # extlinux reads the kernel with its own ext4 reader, which fails on the holes
                # libext2fs leaves for a file's all-zero blocks (a vmlinuz on 1 KiB blocks).
                how[part.name] = "kernel: extlinux boots from it"
                continue
            try:
                _replay(host, part, disks, folder, epoch, scans[part.name])
            except delta.Unwritable as exc:
                how[part.name] = f"kernel: {exc}"
                log.info("%s: the kernel's bytes are kept (%s)", part.name, exc)
                continue
            how[part.name] = "libext2fs"
            written.append(part)
        _copy_differences(disks, _without(changed, written))
    work_size = work.stat().st_size
    host.run(
        [
            "qemu-img",
            "convert",
            "-q",
            "-f",
            "qcow2",
            "-O",
            "qcow2",
            "-F",
            "qcow2",
            "-B",
            parent.name,
            str(work),
            str(out),
        ]
    )
    log.info("checkpoint rewritten in order: %d bytes of overlay, %d written", work_size, out.stat().st_size)
    work.unlink()
    return how


@contextlib.contextmanager
def _opened(host: Host, image: Path, folder: Path, layout: Layout, writable: bool) -> Iterator[AttachedDisk]:
    folder.mkdir()
    with (
        exported(host, image, folder, writable=writable) as raw,
        attached(host, raw, layout, read_only=not writable) as disk,
    ):
        yield disk


def scan_mounted(host: Host, root: Path, layout: Layout, folder: Path, since_ns: int) -> Scans:
    """Each ext filesystem's entries, read from the stage's own mounts while their metadata is
    in memory (reading it again cold through a new mount took a second a stage). A bind that
    is not recursive shows a filesystem alone, without what is mounted on it (/proc, /dev, the
    package cache, other partitions): as the rewrite reads it."""
    scans: Scans = {}
    for part in layout.build_mounts():
        if part.filesystem not in EXT:
            continue
        source = root if part.name == "root" else mount_point(ImagePath(root) / (part.mountpoint or "/"))
        target = folder / f"scan-{part.label}"
        target.mkdir()
        host.run(["mount", "--bind", str(source), str(target)])
        try:
            scans[part.name] = delta.scan(str(target), since_ns - CLOCK_SLACK_NS)
        finally:
            unmount(host, target)
    return scans


def _replay(
    host: Host, part: Partition, disks: dict[str, AttachedDisk], folder: Path, epoch: int, new: delta.Scan
) -> None:
    trees: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        for name in ("parent", "scratch"):
            target = folder / f"{name}-{part.label}"
            target.mkdir()
            device = disks[name].partition_device(part)
            host.run(["mount", "-t", part.filesystem or "auto", "-o", "ro,noload", device, str(target)])
            stack.callback(unmount, host, target)
            trees[name] = str(target)
        started = time.monotonic()
        pair = delta.Trees(os.fsencode(trees["parent"]), os.fsencode(trees["scratch"]))
        found = delta.changes(pair, new)
        values = folder / f"values-{part.label}"
        values.mkdir()
        commands = debugfs.script(pair, found, new, os.fsencode(values), epoch)
        for name, value in commands.values.items():
            (values / name).write_bytes(value)
        script = folder / f"debugfs-{part.label}"
        script.write_bytes(b"".join(line + b"\n" for line in commands.lines))
        log.info(
            "%s: %d entries, %d made, %d gone, %d kept with new metadata: %d commands (%.2f s)",
            part.name, len(new), len(found.made), len(found.gone), len(found.updated), len(commands.lines),
            time.monotonic() - started,
        )  # fmt: skip
        if commands.lines:
            _run_debugfs(host, disks["out"].partition_device(part), script, epoch)


def _run_debugfs(host: Host, device: str, script: Path, epoch: int) -> None:
    """Run the script; debugfs goes on after a failed command, so any message on stderr fails
    the stage (the checkpoint is never published)."""
    errors = script.with_suffix(".errors")
    result = host.run(
        [
            "sh",
            "-c",
            'exec debugfs -w -f "$1" "$2" 2>"$3" >/dev/null',
            "debugfs",
            str(script),
            device,
            str(errors),
        ],
        env={"E2FSPROGS_FAKE_TIME": str(epoch)},
        check=False,
    )
    messages = [
        line for line in errors.read_text(errors="replace").splitlines() if not line.startswith("debugfs ")
    ]
    for line in messages[:50]:
        log.debug("  debugfs: %s", line)
    if result.returncode != 0 or messages:
        raise delta.WriteFailed(
            f"debugfs could not write the stage's changes: {(messages or [result.output])[0]}"
        )


def _own_ranges(host: Host, scratch: Path) -> list[tuple[int, int]]:
    """The byte ranges the scratch overlay itself holds (what the stage wrote or discarded)."""
    result = host.run(["qemu-img", "map", "-f", "qcow2", "--output=json", str(scratch)])
    ranges = []
    for extent in json.loads(result.output):
        if extent.get("depth") == 0 and (extent.get("data") or extent.get("zero")):
            ranges.append((int(extent["start"]), int(extent["start"]) + int(extent["length"])))
    return ranges


def _overlaps(ranges: list[tuple[int, int]], start: int, size: int) -> bool:
    return any(a < start + size and start < b for a, b in ranges)


def _without(ranges: list[tuple[int, int]], parts: list[Partition]) -> list[tuple[int, int]]:
    """The ranges, less the filesystems debugfs wrote (but for their first 1 KiB, a boot block
    no filesystem owns)."""
    holes = sorted((p.start + 1024, p.start + p.size) for p in parts)
    left = []
    for a, b in ranges:
        for hole_a, hole_b in holes:
            if hole_b <= a or b <= hole_a:
                continue
            if a < hole_a:
                left.append((a, hole_a))
            a = max(a, hole_b)
            if a >= b:
                break
        if a < b:
            left.append((a, b))
    return left


def _copy_differences(disks: dict[str, AttachedDisk], ranges: list[tuple[int, int]]) -> None:
    """The scratch's blocks in `ranges` that differ from the parent's, onto the checkpoint."""
    with (
        open(disks["parent"].raw, "rb") as parent,
        open(disks["scratch"].raw, "rb") as scratch,
        open(disks["out"].raw, "r+b") as out,
    ):
        for a, b in ranges:
            for offset in range(a - a % BLOCK, b, 1 << 20):
                length = min(1 << 20, b - offset)
                mine, theirs = (
                    os.pread(scratch.fileno(), length, offset),
                    os.pread(parent.fileno(), length, offset),
                )
                for at in range(0, len(mine), BLOCK):
                    if mine[at : at + BLOCK] != theirs[at : at + BLOCK]:
                        os.pwrite(out.fileno(), mine[at : at + BLOCK], offset + at)
