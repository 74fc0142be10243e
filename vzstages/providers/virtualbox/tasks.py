"""The virtualbox provider's tasks."""

from __future__ import annotations

from ...common import bootable, image
from ...model.info import BuildInfo


class WriteInitramfsModules(bootable.WriteInitramfsModules):
    @classmethod
    def modules(cls, info: BuildInfo) -> list[str]:
        return ["ahci", "sd_mod", "e1000"]


class ConvertImage(image.ConvertImage):
    default_format = "vdi"
