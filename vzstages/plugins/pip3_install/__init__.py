"""pip3_install: bootstrap-vz's later name for pip_install (the same settings, the same tasks)."""

from __future__ import annotations

from ...manifest import Manifest
from ...model.taskset import TaskSet
from ..pip_install import InstallPip
from .tasks import Pip3Install


def resolve_tasks(taskset: TaskSet, manifest: Manifest) -> None:
    taskset.add(InstallPip, Pip3Install)
