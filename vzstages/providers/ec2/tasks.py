"""The ec2 provider's tasks up to the image; publish.py has the publish stage's."""

from __future__ import annotations

from typing import ClassVar

from ...common import bootable, image
from ...model.info import BuildInfo


class WriteInitramfsModules(bootable.WriteInitramfsModules):
    reads = ("system.architecture",)

    @classmethod
    def modules(cls, info: BuildInfo) -> list[str]:
        # Nitro instances: NVMe disks and the ENA network adapter; Xen ones (amd64 only): xen-blkfront.
        # And virtio's disks, for QEMU (the build's boot test).
        if info.manifest.get("system.architecture") == "arm64":
            return ["nvme", "ena", *bootable.VIRTIO_DISKS]
        return ["nvme", "ena", "xen-blkfront", "xen-netfront", *bootable.VIRTIO_DISKS]


class InstallKernel(bootable.InstallKernel):
    packages: ClassVar[dict[str, str]] = {
        "amd64": "linux-image-cloud-amd64",
        "arm64": "linux-image-cloud-arm64",
    }


class ConvertImage(image.ConvertImage):
    default_format = "raw"
