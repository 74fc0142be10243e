"""Google Compute Engine: grub on a raw disk, the cloud kernel with virtio-scsi and gVNIC, the
guest agent from Debian, and the image as `<name>.tar.gz` holding a sparse `disk.raw`."""

from __future__ import annotations

from ...common.groups import add_boot_tasks
from ...manifest import Manifest, Problem
from ...model.taskset import TaskSet
from .tasks import InstallGuestAgent, InstallKernel, PackDiskTarball, WriteInitramfsModules


def validate(manifest: Manifest) -> list[Problem]:
    if manifest.get("system.bootloader") != "grub":
        return [Problem(("system", "bootloader"), "GCE images boot with grub")]
    return []


def resolve_tasks(taskset: TaskSet, manifest: Manifest) -> None:
    add_boot_tasks(taskset, manifest)
    taskset.add(WriteInitramfsModules, InstallKernel, InstallGuestAgent, PackDiskTarball)
