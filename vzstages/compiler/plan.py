"""Compile a manifest into a plan: its tasks, grouped into stages, each with a content key."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import components
from ..cache.record import Record
from ..cache.store import Store
from ..common import groups
from ..host import package_versions
from ..manifest import Manifest
from ..model import graph
from ..model.phases import STAGE_KINDS, Phase, StageKind, stage_kind_of
from ..model.task import Task
from ..model.taskset import TaskSet
from ..model.view import ManifestView
from .keys import key_of, stage_inputs

# The state of the archive suites a stage downloads from: (manifest, suffixes) -> {suite: digest}.
ArchiveProbe = Callable[[Manifest, Sequence[str]], dict[str, str]]


@dataclass
class CompiledStage:
    kind: StageKind
    tasks: list[type[Task]]
    inputs: dict[str, Any]
    key: str
    parent: CompiledStage | None
    outputs: list[Path] = field(default_factory=list)  # workspace files (image, publish stages)

    @property
    def name(self) -> str:
        return self.kind.name

    @property
    def disk(self) -> bool:
        return self.kind.disk


@dataclass
class Plan:
    manifest: Manifest
    store: Store
    stages: list[CompiledStage]

    def stage(self, name: str) -> CompiledStage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(f"this plan has no stage {name!r} (stages: {', '.join(s.name for s in self.stages)})")

    def hit(self, stage: CompiledStage, *, touch: bool) -> Record | None:
        """The stage's record if it is a cache hit (Store.hit: the one definition of one)."""
        base = self.base(stage)
        return self.store.hit(
            stage.name,
            stage.key,
            disk=stage.disk,
            outputs=stage.outputs,
            touch=touch,
            base=(base.name, base.key) if base and not stage.disk else None,
        )

    def base(self, stage: CompiledStage) -> CompiledStage | None:
        """The disk stage whose checkpoint `stage` is built over: its parent's, or for a stage
        without a checkpoint of its own (image, publish), the newest one before it."""
        node = stage.parent
        while node is not None and not node.disk:
            node = node.parent
        return node

    def checkpoint(self, stage: CompiledStage) -> Path:
        return self.store.checkpoint(stage.name, stage.key)

    def stacked_on(self, stage: CompiledStage) -> list[CompiledStage]:
        """The disk stages built over `stage`'s checkpoint, directly or not, in chain order."""
        stacked = []
        for later in self.stages:
            node = later.parent
            while node is not None and node is not stage:
                node = node.parent
            if later.disk and node is stage:
                stacked.append(later)
        return stacked

    def top_checkpoint(self, stage: CompiledStage) -> Path | None:
        """The newest disk checkpoint at or before `stage`."""
        node: CompiledStage | None = stage
        while node is not None and not node.disk:
            node = node.parent
        return self.checkpoint(node) if node else None

    def targets(self, stage: CompiledStage) -> list[Path]:
        if stage.disk:
            return [self.checkpoint(stage)]
        return stage.outputs or [self.store.record_path(stage.name, stage.key)]


# What writes every disk checkpoint: qemu-img creates the overlay and converts it in order,
# qemu-storage-daemon writes its clusters, debugfs (e2fsprogs) writes a stage's changes to its
# ext2/3/4 filesystems.
DISK_STAGE_PACKAGES = ("e2fsprogs", "qemu-utils", "qemu-system-common")


def host_packages(kind: StageKind, tasks: Sequence[type[Task]]) -> tuple[str, ...]:
    found = {p for t in tasks for p in t.host_packages} | set(DISK_STAGE_PACKAGES if kind.disk else ())
    return tuple(sorted(found))


def resolve_tasks(manifest: Manifest) -> TaskSet:
    taskset = TaskSet()
    groups.resolve_tasks(taskset, manifest)
    for component in components.of_manifest(manifest):
        component.resolve_tasks(taskset, manifest)
    return taskset


def compile_plan(
    manifest: Manifest,
    store: Store,
    archive_probe: ArchiveProbe | None = None,
    publish: bool = True,
    secret_key: bytes | None = None,
) -> Plan:
    """The manifest's stages in order; `publish=False` leaves out uploading and registering.
    Secrets are hashed with the cache's secret key unless `secret_key` gives another."""
    if secret_key is None:
        secret_key = store.secret_key() if manifest.secret_values else b""
    ordered = graph.order(resolve_tasks(manifest))
    stages: list[CompiledStage] = []
    parent: CompiledStage | None = None
    for kind in STAGE_KINDS:
        tasks = [t for t in ordered if stage_kind_of(t.phase) is kind]
        if not tasks or (kind.phases == (Phase.IMAGE_PUBLISHING,) and not publish):
            continue
        suites = sorted({s for t in tasks for s in t.archive_suites})
        archive = archive_probe(manifest, suites) if suites and archive_probe is not None else None
        tools = package_versions(host_packages(kind, tasks))
        inputs = stage_inputs(
            kind.name, parent.key if parent else None, tasks, manifest, secret_key, archive, tools
        )
        stage = CompiledStage(kind, tasks, inputs, key_of(inputs), parent)
        for task in tasks:
            view = ManifestView(manifest, task.name(), task.reads)
            stage.outputs += [manifest.workspace / name for name in task.outputs(view, manifest.image_name)]
        stages.append(stage)
        parent = stage
    return Plan(manifest, store, stages)
