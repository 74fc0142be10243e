"""The kvm provider's tasks."""

from __future__ import annotations

from ...common import bootable, image
from ...model.info import BuildInfo


class WriteInitramfsModules(bootable.WriteInitramfsModules):
    reads = ("provider.virtio",)

    @classmethod
    def modules(cls, info: BuildInfo) -> list[str]:
        return list(info.manifest.get("provider.virtio") or ["virtio_pci", "virtio_blk", "virtio_net"])


class ConvertImage(image.ConvertImage):
    default_format = "qcow2"
