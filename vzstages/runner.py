"""Run one compiled stage: reuse its checkpoint, or build it on a fresh overlay and publish it.

A disk stage runs inside the volume context (runtime.py: export, loops, mounts, binds), which is
unwound on any exit; only a stage whose tasks all succeeded and whose context came down cleanly is
published.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

from . import components, runtime
from .cache.record import Record, file_sha256
from .cache.remote import Remote
from .cache.store import Store, output_signature
from .common import reproducible
from .common.image import FORMATS
from .compiler.plan import CompiledStage, Plan
from .errors import VzError
from .host import Host
from .model.info import BuildInfo
from .model.view import ManifestView
from .volume import fsck

progress = logging.getLogger("vzstages.progress")
log = logging.getLogger("vzstages.runner")


def run_stage(
    plan: Plan,
    stage: CompiledStage,
    host: Host,
    display: str = "",
    remote: Remote | None = None,
    ahead: Sequence[tuple[str, str]] = (),
) -> tuple[Record, str]:
    """Reuse the stage from the local store, else pull it from the remote cache, else build it.
    Returns its record and which of those happened: "cached", "pulled" or "built". `display`
    names the stage in progress lines (`kvm+gce:os` when several images share it); `ahead`, the
    stages the build will want over this one, which a pull may bring along."""
    display = display or stage.name
    store = plan.store
    store.ensure()
    with store.lock(stage.name, stage.key):
        record = plan.hit(stage, touch=True)
        if record is not None and remote is not None and remote.pulled_this_run(stage.name, stage.key):
            return record, "pulled"  # along with an earlier stage of its chain
        if record is not None:
            progress.info("%-8s cached (%s)", display, stage.key[:12])
            return record, "cached"
        if remote is not None and stage.disk:
            parent = (stage.parent.name, stage.parent.key) if stage.parent else None
            if remote.pull(stage.name, stage.key, parent, ahead=ahead):
                record = plan.hit(stage, touch=True)
                if record is not None:
                    return record, "pulled"
        return _build(plan, stage, host, display), "built"


def _build(plan: Plan, stage: CompiledStage, host: Host, display: str) -> Record:
    """Run the stage's tasks (its disk mounted, for a disk stage) and save its record."""
    store = plan.store
    expected = last_duration(store, stage.name)
    about = f", about {expected:.0f}s last time" if expected else ""
    progress.info(
        "%-8s running %d tasks (%s%s)",
        display,
        len(stage.tasks),
        stage.key[:12],
        about,
        extra={"stage": (display, "start", expected)},
    )
    started = time.monotonic()
    info = _build_info(plan, stage, host)
    timings: dict[str, float] = {}
    base = _base_record(plan, stage)
    digest = ""
    if stage.disk:
        digest = _build_disk_stage(plan, stage, info, timings, base)
    else:
        info.workspace.mkdir(parents=True, exist_ok=True)
        runtime.run_tasks(stage.tasks, plan.manifest, info, timings)
        if stage.name == "image":
            checked = time.monotonic()
            check_images(plan, stage, info)
            timings["fsck"] = round(time.monotonic() - checked, 3)
    timings["total"] = round(time.monotonic() - started, 3)
    record = Record(
        stage=stage.name,
        key=stage.key,
        parent=stage.parent.key if stage.parent else None,
        parent_stage=stage.parent.name if stage.parent else None,
        inputs=stage.inputs,
        facts=info.facts,
        outputs={str(p): output_signature(p) for p in stage.outputs},
        sizes=_sizes(plan.checkpoint(stage)) if stage.disk else {},
        timings=timings,
        tools=tool_versions(host),
        created=time.time(),
        manifest=str(plan.manifest.path),
        digest=digest,
        parent_digest=base.digest if base else "",
    )
    store.save_record(record)
    progress.info(
        "%-8s done in %.1fs", display, timings["total"], extra={"stage": (display, "end", timings["total"])}
    )
    return record


def _build_info(plan: Plan, stage: CompiledStage, host: Host) -> BuildInfo:
    return BuildInfo(
        manifest=ManifestView(plan.manifest, "<stage>", ()),
        stage=stage.name,
        key=stage.key,
        host=host,
        layout=plan.manifest.layout,
        workspace=plan.manifest.workspace,
        package_cache=plan.store.packages,
        runs=plan.store.runs,
        image_name=plan.manifest.image_name,
        facts=(facts := dict(_parent_facts(plan, stage))) | {"epoch": reproducible.epoch_of(facts)},
        archive=dict(stage.inputs.get("archive") or {}),
        source_image=None if stage.disk else plan.top_checkpoint(stage),
        parent_stage=stage.parent.name if stage.parent else None,
    )


# The disk images qemu reads, by file extension: what the image stage writes (common/image.py).
DISK_FORMATS = {ext: qemu_fmt for qemu_fmt, _, ext in FORMATS.values()}


def check_images(plan: Plan, stage: CompiledStage, info: BuildInfo) -> None:
    """No image is reported before its filesystems pass a read-only fsck: every disk image
    the stage wrote, or, for outputs that are not disk images (a tarball), the checkpoint
    they were made from."""
    images = [(p, DISK_FORMATS[p.suffix[1:]]) for p in stage.outputs if p.suffix[1:] in DISK_FORMATS]
    if not images and info.source_image is not None:
        images = [(info.source_image, "qcow2")]
    for path, fmt in images:
        for line in fsck.check_image(info.host, path, fmt, info.layout, info.runs):
            log.info("%s: %s", path.name, line)
        info.say(f"checked {path.name}: every filesystem clean")


def last_duration(store: Store, stage: str) -> float | None:
    """How long the newest build of a stage of this name took (any key): what to expect."""
    timed = [r for r in store.records(stage) if r.timings.get("total")]
    return max(timed, key=lambda r: r.created).timings["total"] if timed else None


def _parent_facts(plan: Plan, stage: CompiledStage) -> dict[str, Any]:
    if stage.parent is None:
        return {}
    parent = plan.store.lookup(stage.parent.name, stage.parent.key, disk=stage.parent.disk)
    if parent is None:
        raise RuntimeError(
            f"stage {stage.name}: parent checkpoint {stage.parent.name}-{stage.parent.key} is missing"
        )
    return parent.facts


def _base_record(plan: Plan, stage: CompiledStage) -> Record | None:
    """The record of the checkpoint the stage is built over, whose digest its own names."""
    base = plan.base(stage)
    if base is None:
        return None
    record = plan.store.lookup(base.name, base.key, disk=True)
    if record is None or not record.digest:
        raise VzError(f"stage {stage.name}: the checkpoint {base.name}-{base.key[:12]} it builds on is gone")
    return record


def _same_file(path: Path | None, before: tuple[int, int] | None) -> bool:
    if path is None:
        return True
    try:
        st = path.stat()
    except OSError:
        return False
    return (st.st_ino, st.st_mtime_ns) == before


def _identity(path: Path | None) -> tuple[int, int] | None:
    if path is None:
        return None
    st = path.stat()
    return st.st_ino, st.st_mtime_ns


def _build_disk_stage(
    plan: Plan, stage: CompiledStage, info: BuildInfo, timings: dict[str, float], base: Record | None
) -> str:
    """Build the stage's overlay and publish it; returns its digest. The parent's file must be
    the same one from before the overlay is opened until after it is closed: another build
    may replace a parent (a pull that makes this cache converge on the remote's chain), and an
    overlay is only valid over the bytes its record names."""
    store = plan.store
    tmp = store.temp_checkpoint(stage.name, stage.key)
    parent = plan.top_checkpoint(stage.parent) if stage.parent else None
    before = _identity(parent)
    # A component may have the stage run elsewhere (tmpfs_workspace: in memory); the checkpoint
    # is written into the cache all the same, by the same conversion.
    elsewhere = components.overlay_folder(plan.manifest) if parent is not None else None
    try:
        if elsewhere is None:
            runtime.run_disk_stage(stage.tasks, plan.manifest, info, tmp, timings, parent=parent)
        else:
            with elsewhere(info.host, store.runs, stage.name, plan.manifest) as folder:
                runtime.run_disk_stage(
                    stage.tasks, plan.manifest, info, tmp, timings, parent=parent, scratch=folder
                )
        now = store.lookup(base.stage, base.key, disk=True) if base else None
        if not _same_file(parent, before) or (base and (now is None or now.digest != base.digest)):
            raise VzError(f"stage {stage.name}: its parent checkpoint was replaced while it ran; run again")
        started = time.monotonic()
        digest = file_sha256(tmp)
        timings["digest"] = round(time.monotonic() - started, 3)
        return store.publish_checkpoint(tmp, stage.name, stage.key, digest)
    finally:
        tmp.unlink(missing_ok=True)


def _sizes(checkpoint: Path) -> dict[str, int]:
    st = checkpoint.stat()
    return {"file": st.st_size, "allocated": st.st_blocks * 512}


@cache
def tool_versions(host: Host) -> dict[str, str]:
    versions = {}
    for tool, argv in (
        ("qemu-img", ["qemu-img", "--version"]),
        ("mmdebstrap", ["dpkg-query", "-W", "-f", "${Version}", "mmdebstrap"]),
    ):
        result = host.run(argv, check=False)
        versions[tool] = (
            result.output.splitlines()[0].strip() if result.returncode == 0 and result.output else "?"
        )
    return versions
