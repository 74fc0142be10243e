"""VirtualBox: a vdi or vmdk disk for the SATA/AHCI controller, e1000 network."""

from __future__ import annotations

from ...common import bootable
from ...common.groups import add_boot_tasks
from ...manifest import Manifest, Problem
from ...model.taskset import TaskSet
from .tasks import ConvertImage, WriteInitramfsModules


def validate(manifest: Manifest) -> list[Problem]:
    if manifest.has("provider.guest_additions"):
        return [
            Problem(
                ("provider", "guest_additions"),
                "guest additions are out of scope: they are built against the host's VirtualBox "
                "ISO; install them in the machine, or leave this key out",
            )
        ]
    return []


def resolve_tasks(taskset: TaskSet, manifest: Manifest) -> None:
    add_boot_tasks(taskset, manifest)
    taskset.add(WriteInitramfsModules, bootable.InstallKernel, ConvertImage)
