"""KVM/QEMU: a qcow2 (or raw) disk with virtio drivers in the initramfs."""

from __future__ import annotations

from ...common import bootable
from ...common.groups import add_boot_tasks
from ...manifest import Manifest
from ...model.taskset import TaskSet
from .tasks import ConvertImage, WriteInitramfsModules


def resolve_tasks(taskset: TaskSet, manifest: Manifest) -> None:
    add_boot_tasks(taskset, manifest)
    taskset.add(WriteInitramfsModules, bootable.InstallKernel, ConvertImage)
