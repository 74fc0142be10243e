"""KVM/QEMU: a qcow2 (or raw) disk with virtio drivers in the initramfs."""

from __future__ import annotations

from ...common import bootable, image
from ...common.groups import add_boot_tasks
from ...manifest import Manifest
from ...model.info import BuildInfo
from ...model.taskset import TaskSet


class WriteInitramfsModules(bootable.WriteInitramfsModules):
    reads = ("provider.virtio",)

    @classmethod
    def modules(cls, info: BuildInfo) -> list[str]:
        return list(info.manifest.get("provider.virtio") or ["virtio_pci", "virtio_blk", "virtio_net"])


class ConvertImage(image.ConvertImage):
    default_format = "qcow2"


def resolve_tasks(taskset: TaskSet, manifest: Manifest) -> None:
    add_boot_tasks(taskset, manifest)
    taskset.add(WriteInitramfsModules, bootable.InstallKernel, ConvertImage)
