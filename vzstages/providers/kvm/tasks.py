"""The kvm provider's tasks."""

from __future__ import annotations

from ...common import bootable, image
from ...model.info import BuildInfo


class WriteInitramfsModules(bootable.WriteInitramfsModules):
    reads = ("provider.virtio",)

    @classmethod
    def modules(cls, info: BuildInfo) -> list[str]:
        # The manifest's virtio drivers, and always the PCI transport and the disk drivers: a
        # bootstrap-vz list such as [virtio_blk] alone would leave the disk without its bus.
        chosen = info.manifest.get("provider.virtio") or ["virtio_net"]
        return list(dict.fromkeys([*bootable.VIRTIO_DISKS, *chosen]))


class ConvertImage(image.ConvertImage):
    default_format = "qcow2"
