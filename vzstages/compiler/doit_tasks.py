"""The plan as doit tasks: one task per stage, file_dep the parent checkpoint, target its own."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import xxhash
from doit.dependency import MD5Checker

from .explain import StageStatus, explain
from .plan import CompiledStage, Plan


def file_xxh3(path: str) -> str:
    h = xxhash.xxh3_128()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


class XxhashChecker(MD5Checker):
    """doit's MD5 checker (timestamp, then size, then content) with xxh3 for the content:
    checkpoints are gigabytes, and md5 would read them at a fraction of the speed."""

    def check_modified(self, file_path: str, file_stat: os.stat_result, state: Any) -> bool:
        timestamp, size, digest = state
        if file_stat.st_mtime == timestamp:
            return False
        if file_stat.st_size != size:
            return True
        return bool(digest != file_xxh3(file_path))

    def get_state(self, dep: str, current_state: Any) -> Any:
        timestamp = os.path.getmtime(dep)
        if current_state and current_state[0] == timestamp:
            return None
        return timestamp, os.path.getsize(dep), file_xxh3(dep)


def doit_config(cache_dir: Path) -> dict[str, Any]:
    cache_dir.mkdir(parents=True, exist_ok=True)
    return {
        "backend": "vzstages",
        "reporter": "vzstages",
        "dep_file": str(cache_dir / "doit.sqlite3"),
        "check_file_uptodate": XxhashChecker,
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
    }


StageAction = Callable[[CompiledStage], dict[str, bool]]


def stage_task(plan: Plan, status: StageStatus, action: StageAction) -> dict[str, Any]:
    stage = status.stage
    parent = plan.top_checkpoint(stage.parent) if stage.parent else None
    return {
        "basename": stage.name,
        "doc": f"{stage.kind.doc} ({len(stage.tasks)} tasks)",
        "meta": stage_meta(status),
        "actions": [(action, [stage])],
        "file_dep": [str(parent)] if parent else [],
        "targets": [str(t) for t in plan.targets(stage)],
        "task_dep": [stage.parent.name] if stage.parent else [],
        "uptodate": [StageHit(plan, stage)],
    }


class StageHit:
    """doit's up-to-date check for a stage: the store's own definition of a hit (the record, the
    chain, the outputs), which also marks the entry used, so a chain doit skips every day is
    as recently used for `cache gc` as one that runs."""

    def __init__(self, plan: Plan, stage: CompiledStage):
        self.plan = plan
        self.stage = stage

    def __call__(self, task: Any, values: Any) -> bool:
        return self.plan.hit(self.stage, touch=True) is not None


def doit_tasks(plan: Plan, action: StageAction) -> Iterator[dict[str, Any]]:
    for status in explain(plan):
        yield stage_task(plan, status, action)
