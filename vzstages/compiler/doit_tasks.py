"""The plan as doit tasks: one task per stage, after its parent's (task_dep), its checkpoint or
image as target, and the store's own definition of a hit as its only up-to-date check.

No file_dep: whether a stage is done is the store's answer (its record, its chain linked by
content, its outputs), asked the same way by `plan`, the runner, `doit list --status` and doit's
run, so they cannot disagree, whatever another manifest, machine or `doit forget` left in doit's
database."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .explain import StageStatus, explain
from .plan import CompiledStage, Plan

if TYPE_CHECKING:
    from ..cache.remote import Remote


def doit_config(cache_dir: Path) -> dict[str, Any]:
    cache_dir.mkdir(parents=True, exist_ok=True)
    return {
        "backend": "vzstages",
        "reporter": "vzstages",
        "dep_file": str(cache_dir / "doit.sqlite3"),
        "verbosity": 2,
        "action_string_formatting": "new",
        "sort": "definition",
    }


def stage_meta(status: StageStatus) -> dict[str, Any]:
    """Shown by `doit info STAGE`: the key, whether the stage runs and why, and its tasks."""
    return {
        "key": status.stage.key,
        "will": status.label,
        "why": status.reasons,
        "tasks": [t.name() for t in status.stage.tasks],
        # For the summary: what the cache saves when the stage is reused, and the images made.
        "seconds": status.record.timings.get("total") if status.hit and status.record else None,
        "images": [str(p) for p in status.stage.outputs if not p.name.endswith(".json")],
    }


StageAction = Callable[[Plan, CompiledStage, str], Any]
Node = tuple[str, str, tuple[str, ...]]  # a stage's name, key and workspace outputs


def node(stage: CompiledStage) -> Node:
    # Two image stages with one key but different output files (two names) are two tasks.
    return stage.name, stage.key, tuple(str(p) for p in stage.outputs)


class StageHit:
    """doit's up-to-date check for a stage: the store's own definition of a hit (the record, the
    chain, the outputs), which also marks the entry used, so a chain doit skips every day is
    as recently used for `cache gc` as one that runs."""

    def __init__(self, plan: Plan, stage: CompiledStage, remote: Remote | None = None):
        self.plan = plan
        self.stage = stage
        self.remote = remote

    def __call__(self, task: Any, values: Any) -> bool:
        if self.remote is not None and self.remote.pulled_this_run(self.stage.name, self.stage.key):
            return False  # brought along by an earlier stage's pull: its action reports it pulled
        return self.plan.hit(self.stage, touch=True) is not None


def plan_labels(plans: list[Plan]) -> list[str]:
    """One short name per plan (the manifest's file name), made unique."""
    labels: list[str] = []
    for plan in plans:
        label = plan.manifest.path.stem
        while label in labels:
            label += "'"
        labels.append(label)
    return labels


def doit_tasks(
    plans: list[Plan], action: StageAction, remote: Remote | None = None
) -> Iterator[dict[str, Any]]:
    """The stages as doit tasks. One manifest: a task per stage, named by the stage (`os`).
    Several: a task per distinct stage, `IMAGE:STAGE` under the first manifest that has it, and
    one group task per manifest (`IMAGE`) that builds its image."""
    if len(plans) == 1:
        for status in explain(plans[0], remote):
            stage = status.stage
            parent = [stage.parent.name] if stage.parent else []
            task = {"basename": stage.name, **_task(plans[0], status, action, stage.name, parent, remote)}
            _add_result(task, plans[0], {s.name: s.name for s in plans[0].stages})
            yield task
        return
    labels = plan_labels(plans)
    sharing: dict[Node, list[str]] = {}
    for plan, label in zip(plans, labels, strict=True):
        for stage in plan.stages:
            sharing.setdefault(node(stage), []).append(label)
    emitted: set[Node] = set()
    for plan, label in zip(plans, labels, strict=True):
        yield {
            "basename": label,
            "name": None,
            "doc": f"build {plan.manifest.image_name} ({plan.manifest.path})",
        }
        for status in explain(plan, remote):
            stage = status.stage
            here = node(stage)
            if here in emitted:
                continue
            emitted.add(here)
            parent = [f"{sharing[node(stage.parent)][0]}:{stage.parent.name}"] if stage.parent else []
            display = f"{'+'.join(sharing[here])}:{stage.name}"
            task = {
                "basename": label,
                "name": stage.name,
                **_task(plan, status, action, display, parent, remote),
            }
            names = {s.name: f"{sharing[node(s)][0]}:{s.name}" for s in plan.stages}
            _add_result(task, plan, names)
            yield task


def _add_result(task: dict[str, Any], plan: Plan, task_names: dict[str, str]) -> None:
    """What the image stage's result file names (results.py): the manifest and its chain."""
    if not task["meta"]["images"]:
        return
    manifest = plan.manifest
    task["meta"]["result"] = {
        "name": manifest.image_name,
        "manifest": str(manifest.path),
        "provider": manifest.provider,
        "workspace": str(manifest.workspace),
        "cache": str(plan.store.root),
        "chain": [[s.name, s.key, task_names[s.name]] for s in plan.stages],
    }


def _task(
    plan: Plan,
    status: StageStatus,
    action: StageAction,
    display: str,
    parent_task: list[str],
    remote: Remote | None,
) -> dict[str, Any]:
    stage = status.stage
    return {
        "doc": f"{stage.kind.doc} ({len(stage.tasks)} tasks)",
        "meta": stage_meta(status),
        "actions": [(action, [plan, stage, display])],
        "targets": [str(t) for t in plan.targets(stage)],
        "task_dep": parent_task,
        "uptodate": [StageHit(plan, stage, remote)],
    }
