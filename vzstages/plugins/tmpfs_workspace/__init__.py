"""tmpfs_workspace: each disk stage writes its overlay on a tmpfs of its own, and the finished
checkpoint is copied into the cache. The checkpoint's bytes do not depend on where it was built,
so the setting enters no stage key: it changes how fast a stage builds, not what it holds.
The stage runner does the work (runner.py); the plugin adds no task."""

from __future__ import annotations

from ...manifest import Manifest
from ...model.taskset import TaskSet


def resolve_tasks(taskset: TaskSet, manifest: Manifest) -> None:
    pass
