"""Docker: a root filesystem tarball that `docker import` takes, with its labels and changes.

No kernel, no bootloader; the build still runs on a qcow2 checkpoint chain like every provider,
and the image stage packs the top checkpoint's tree into `<name>.tar`. The labels and Dockerfile
instructions go into `<name>.changes`, one `--change` argument per line:

    docker import $(sed 's/^/--change=/' NAME.changes | tr '\\n' ' ') NAME.tar REPO:TAG
"""

from __future__ import annotations

from ...manifest import Manifest, Problem
from ...model.taskset import TaskSet
from .tasks import ExportRootfs


def validate(manifest: Manifest) -> list[Problem]:
    problems = []
    if manifest.get("system.bootloader") != "none":
        problems.append(
            Problem(("system", "bootloader"), "docker images boot no kernel: use bootloader: none")
        )
    if manifest.get("volume.partitions.type") != "none":
        problems.append(
            Problem(("volume", "partitions", "type"), "docker images are one filesystem: use type: none")
        )
    return problems


def resolve_tasks(taskset: TaskSet, manifest: Manifest) -> None:
    taskset.add(ExportRootfs)
