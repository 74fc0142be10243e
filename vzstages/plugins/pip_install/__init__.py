"""pip_install: Python packages from the package index into the image's system Python.

Debian marks its Python as externally managed (PEP 668); packages go in with
--break-system-packages, as the manifest asks for them system-wide.
"""

from __future__ import annotations

from typing import ClassVar

from ...common.apt import AptInstall
from ...common.pip import pip_install
from ...manifest import Manifest
from ...model.info import BuildInfo
from ...model.phases import Phase
from ...model.task import Task
from ...model.taskset import TaskSet


class InstallPip(AptInstall):
    description = "Installing pip"
    packages = ("python3-pip",)


class PipInstall(Task):
    description = "Installing Python packages with pip"
    phase = Phase.USER_MODIFICATION
    reads = ("plugins.pip_install.packages",)
    settings_key: ClassVar[str] = "plugins.pip_install.packages"

    @classmethod
    def run(cls, info: BuildInfo) -> None:
        packages = info.manifest.get(cls.settings_key)
        pip_install(info, ["python3", "-m", "pip"], ["--break-system-packages", *packages])


def resolve_tasks(taskset: TaskSet, manifest: Manifest) -> None:
    taskset.add(InstallPip, PipInstall)
