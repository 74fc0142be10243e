"""Run one compiled stage: reuse its checkpoint, or build it on a fresh overlay and publish it.

A disk stage runs inside the volume context (export, loops, mounts, binds), which is unwound on
any exit; only a stage whose tasks all succeeded and whose context came down cleanly is published.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import Any

from .cache.store import Record, output_signature, outputs_intact, publish_file
from .compiler.plan import CompiledStage, Plan
from .host import Host
from .model.info import BuildInfo
from .model.view import ManifestView
from .volume.disk import attached, exported, mounted
from .volume.runs import run_folder

progress = logging.getLogger("vzstages.progress")
log = logging.getLogger("vzstages.runner")


def run_stage(plan: Plan, stage: CompiledStage, host: Host) -> tuple[Record, bool]:
    """Build the stage, or reuse it; return its record and whether it was reused."""
    store = plan.store
    store.ensure()
    with store.lock(stage.name, stage.key):
        record = store.lookup(stage.name, stage.key, disk=stage.disk)
        if record is not None and all(p.exists() for p in stage.outputs) and outputs_intact(record):
            store.touch(stage.name, stage.key)
            progress.info("%-8s cached (%s)", stage.name, stage.key[:12])
            return record, True
        progress.info("%-8s running %d tasks (%s)", stage.name, len(stage.tasks), stage.key[:12])
        started = time.monotonic()
        info = BuildInfo(
            manifest=ManifestView(plan.manifest, "<stage>", ()),
            stage=stage.name,
            key=stage.key,
            host=host,
            layout=plan.manifest.layout,
            workspace=plan.manifest.workspace,
            package_cache=store.packages,
            runs=store.runs,
            image_name=plan.manifest.image_name,
            facts=dict(_parent_facts(plan, stage)),
            source_image=None if stage.disk else plan.top_checkpoint(stage),
        )
        timings: dict[str, float] = {}
        if stage.disk:
            _build_disk_stage(plan, stage, info, timings)
        else:
            info.workspace.mkdir(parents=True, exist_ok=True)
            _run_tasks(plan, stage, info, timings)
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
        )
        store.save_record(record)
        progress.info("%-8s done in %.1fs", stage.name, timings["total"])
        return record, False


def _parent_facts(plan: Plan, stage: CompiledStage) -> dict[str, Any]:
    if stage.parent is None:
        return {}
    parent = plan.store.lookup(stage.parent.name, stage.parent.key, disk=stage.parent.disk)
    if parent is None:
        raise RuntimeError(
            f"stage {stage.name}: parent checkpoint {stage.parent.name}-{stage.parent.key} is missing"
        )
    return parent.facts


def _build_disk_stage(plan: Plan, stage: CompiledStage, info: BuildInfo, timings: dict[str, float]) -> None:
    host, store = info.host, plan.store
    tmp = store.temp_checkpoint(stage.name, stage.key)
    if stage.parent is None:
        host.run(["qemu-img", "create", "-q", "-f", "qcow2", str(tmp), str(info.layout.disk_size)])
    else:
        parent = plan.top_checkpoint(stage.parent)
        assert parent is not None
        # A backing file name relative to the overlay: the cache folder can move as a whole.
        host.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", parent.name, str(tmp)])
    try:
        with (
            run_folder(store.runs, stage.name) as folder,
            exported(host, tmp, folder) as raw,
            attached(host, raw, info.layout) as disk,
        ):
            info.disk = disk
            if stage.parent is None:
                _run_tasks(plan, stage, info, timings)  # the volume stage partitions and formats
            else:
                with mounted(host, disk, folder / "root") as tree, host_dns(tree.root):
                    info.tree = tree
                    _run_tasks(plan, stage, info, timings)
                    tree.trim(info.layout)
        publish_file(tmp, plan.checkpoint(stage))
    finally:
        tmp.unlink(missing_ok=True)


def _run_tasks(plan: Plan, stage: CompiledStage, info: BuildInfo, timings: dict[str, float]) -> None:
    done = []
    try:
        for task in stage.tasks:
            started = time.monotonic()
            progress.info("  %s: %s", stage.name, task.description or task.name())
            log.info("task %s", task.name())
            task.run(replace(info, manifest=ManifestView(plan.manifest, task.name(), task.reads)))
            timings[task.name()] = round(time.monotonic() - started, 3)
            done.append(task)
    except BaseException:
        for task in reversed(done):
            try:
                task.rollback(replace(info, manifest=ManifestView(plan.manifest, task.name(), task.reads)))
            except Exception:
                log.exception("rollback of %s failed", task.name())
        raise


@contextlib.contextmanager
def host_dns(root: Path) -> Iterator[None]:
    """Give the chroot the build host's DNS for the stage, and put the image's own back after.

    The image's resolv.conf (often a symlink to systemd-resolved's stub) is moved aside, so no
    checkpoint ever holds the build host's resolver. If a package replaced ours during the stage,
    the package's version is kept.
    """
    etc = root / "etc"
    if not etc.is_dir():
        yield  # before debootstrap there is no /etc yet
        return
    conf, saved = etc / "resolv.conf", etc / ".resolv.conf.vzstages"
    ours = Path("/etc/resolv.conf").read_bytes() if Path("/etc/resolv.conf").exists() else b""
    had_own = conf.exists() or conf.is_symlink()
    if had_own:
        os.replace(conf, saved)
    conf.write_bytes(ours)
    try:
        yield
    finally:
        replaced = conf.is_symlink() or not conf.exists() or conf.read_bytes() != ours
        if not replaced:
            conf.unlink()
            if had_own:
                os.replace(saved, conf)
        else:
            saved.unlink(missing_ok=True)


def _sizes(checkpoint: Path) -> dict[str, int]:
    st = checkpoint.stat()
    return {"file": st.st_size, "allocated": st.st_blocks * 512}


@cache
def tool_versions(host: Host) -> dict[str, str]:
    versions = {}
    for tool, argv in (
        ("qemu-img", ["qemu-img", "--version"]),
        ("debootstrap", ["dpkg-query", "-W", "-f", "${Version}", "debootstrap"]),
    ):
        result = host.run(argv, check=False)
        versions[tool] = (
            result.output.splitlines()[0].strip() if result.returncode == 0 and result.output else "?"
        )
    return versions
