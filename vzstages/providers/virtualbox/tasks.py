"""The virtualbox provider's tasks."""

from __future__ import annotations

from ...common import bootable, image
from ...model.info import BuildInfo


class WriteInitramfsModules(bootable.WriteInitramfsModules):
    @classmethod
    def modules(cls, info: BuildInfo) -> list[str]:
        # VirtualBox's SATA (AHCI) and IDE controllers, its e1000 network card, and virtio's disks.
        return ["ahci", "ata_piix", "sd_mod", "e1000", *bootable.VIRTIO_DISKS]


class ConvertImage(image.ConvertImage):
    default_format = "vdi"
