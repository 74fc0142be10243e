"""pip_install: Python packages from the package index into the image's system Python.

Debian marks its Python as externally managed (PEP 668); packages go in with
--break-system-packages, as the manifest asks for them system-wide.
"""

from __future__ import annotations

from ...common.pip import InstallPip, PipInstall
from ...manifest import Manifest
from ...model.taskset import TaskSet


class InstallPipPackages(PipInstall):
    reads = ("plugins.pip_install.packages",)
    settings_key = "plugins.pip_install.packages"


def resolve_tasks(taskset: TaskSet, manifest: Manifest) -> None:
    taskset.add(InstallPip, InstallPipPackages)
