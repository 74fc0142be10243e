"""Why a stage runs: the inputs that differ from the closest cached entry of the same stage."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..cache.record import Record
from ..cache.store import outputs_intact
from ..units import human_age, human_size
from .plan import CompiledStage, Plan

if TYPE_CHECKING:
    from ..cache.remote import Remote


@dataclass
class StageStatus:
    stage: CompiledStage
    hit: bool  # in the local store
    reasons: list[str] = field(default_factory=list)
    record: Record | None = None
    pull: int | None = None  # bytes to pull when the remote cache has it

    @property
    def label(self) -> str:
        return "cached" if self.hit else "remote" if self.pull is not None else "run"

    @property
    def runs(self) -> bool:
        return not self.hit and self.pull is None


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value) if not isinstance(value, dict) or "absent" not in value else "(unset)"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def diff_inputs(new: dict[str, Any], old: dict[str, Any]) -> list[str]:
    reasons: list[str] = []
    if new.get("format") != old.get("format"):
        reasons.append(f"vzstages checkpoint format changed ({old.get('format')} -> {new.get('format')})")
    if new.get("runtime") != old.get("runtime"):
        reasons.append("vzstages stage runtime changed (runtime.py, volume and host layers, manifest)")
    old_tasks, new_tasks = dict(old.get("tasks", [])), dict(new.get("tasks", []))
    reasons += [f"task added: {t}" for t in new_tasks if t not in old_tasks]
    reasons += [f"task removed: {t}" for t in old_tasks if t not in new_tasks]
    reasons += [
        f"task code changed: {t}" for t in new_tasks if t in old_tasks and new_tasks[t] != old_tasks[t]
    ]
    if [t for t in new_tasks if t in old_tasks] != [t for t in old_tasks if t in new_tasks]:
        reasons.append("task order changed")
    old_m, new_m = old.get("manifest", {}), new.get("manifest", {})
    for key in sorted(set(old_m) | set(new_m)):
        before, after = old_m.get(key, {"absent": True}), new_m.get(key, {"absent": True})
        if before != after:
            secret = "sha256:" in repr(before) + repr(after)
            shown = "(secret value changed)" if secret else f"{_short(before)} -> {_short(after)}"
            reasons.append(f"manifest key {key}: {shown}")
    old_f, new_f = old.get("files", {}), new.get("files", {})
    for name in sorted(set(old_f) | set(new_f)):
        if name not in old_f:
            reasons.append(f"file added: {name}")
        elif name not in new_f:
            reasons.append(f"file removed: {name}")
        elif old_f[name] != new_f[name]:
            reasons.append(f"file changed: {name}")
    old_t, new_t = old.get("host_tools") or {}, new.get("host_tools") or {}
    reasons += [
        f"build host's {name} changed: {old_t.get(name, 'absent')} -> {new_t.get(name, 'absent')}"
        for name in sorted(set(old_t) | set(new_t))
        if old_t.get(name) != new_t.get(name)
    ]
    if new.get("archive") != old.get("archive"):
        changed = sorted(
            k
            for k in set(new.get("archive") or {}) | set(old.get("archive") or {})
            if (new.get("archive") or {}).get(k) != (old.get("archive") or {}).get(k)
        )
        reasons.append("archive state changed: " + (", ".join(changed) or "refreshed"))
    return reasons


def _distance(new: dict[str, Any], old: dict[str, Any]) -> int:
    return len(diff_inputs(new, old)) + (0 if new.get("parent") == old.get("parent") else 1)


def explain(plan: Plan, remote: Remote | None = None) -> list[StageStatus]:
    """Each stage of the plan: cached, to pull from `remote`, or to run, and why."""
    statuses: list[StageStatus] = []
    parent_runs = False
    for stage in plan.stages:
        hit = None if parent_runs else plan.hit(stage, touch=False)
        if hit is not None:
            age = time.time() - hit.created
            statuses.append(StageStatus(stage, True, [f"cached {human_age(age)} ago"], hit))
            continue
        # Only the stage's own blob: its ancestors' pulls show on their own lines.
        needed = remote.chain(stage.name, stage.key) if remote and stage.disk else None
        pull = needed[0].size if needed else None
        if pull is not None and not parent_runs:
            reason = f"in the remote cache: pull {human_size(pull)}"
            statuses.append(StageStatus(stage, False, [reason], None, pull))
            continue
        record = plan.store.lookup(stage.name, stage.key, disk=stage.disk)
        reasons: list[str] = []
        if record and not parent_runs:
            outputs_missing = [p for p in stage.outputs if not p.exists()]
            if not outputs_missing and not outputs_intact(record):
                outputs_missing = [p for p in stage.outputs if str(p) in record.outputs]
            if outputs_missing:
                reasons.append("output missing or overwritten: " + ", ".join(p.name for p in outputs_missing))
            else:
                base = plan.base(stage)
                problem = plan.store.chain_problem(
                    record, disk=stage.disk, base=(base.name, base.key) if base and not stage.disk else None
                )
                reasons.append(problem or "its checkpoint chain is incomplete or damaged (see the warnings)")
        elif parent_runs and stage.parent is not None:
            reasons.append(f"parent stage {stage.parent.name} runs")
        candidates = [r for r in plan.store.records(stage.name) if r.key != stage.key]
        if candidates and not record:
            closest = min(candidates, key=lambda r: (_distance(stage.inputs, r.inputs), -r.created))
            changes = diff_inputs(stage.inputs, closest.inputs)
            if closest.parent != stage.inputs.get("parent") and not parent_runs:
                changes.insert(
                    0, f"parent stage {stage.parent.name if stage.parent else '?'} has another key"
                )
            reasons += changes or ([] if parent_runs else ["inputs differ from every cached entry"])
        elif not record and not parent_runs:
            reasons.append("never built")
        statuses.append(StageStatus(stage, False, reasons, record))
        parent_runs = True
    return statuses
