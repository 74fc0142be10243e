"""pip3_install: bootstrap-vz's later name for pip_install (the same settings, the same tasks).
The two plugins can be used together."""

from __future__ import annotations

from ...common.pip import InstallPip, PipInstall
from ...manifest import Manifest
from ...model.taskset import TaskSet


class Pip3Install(PipInstall):
    reads = ("plugins.pip3_install.packages",)
    settings_key = "plugins.pip3_install.packages"


def resolve_tasks(taskset: TaskSet, manifest: Manifest) -> None:
    taskset.add(InstallPip, Pip3Install)
