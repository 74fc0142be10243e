from __future__ import annotations

import json

from ...common.apt import AptInstall
from ...common.bootable import AddInitramfsModules
from ...model.info import BuildInfo
from ...model.phases import Phase
from ...model.task import Task

__all__ = ["ConfigureOpenNebula", "InstallSudo", "LoadCdromDrivers"]


class InstallSudo(AptInstall):
    """cloud-init's OpenNebula datasource reads context.sh as nobody, through sudo (a package
    cloud-init only recommends): without it the context is never read."""

    description = "Installing sudo, which cloud-init's OpenNebula datasource runs"
    packages = ("sudo",)


class LoadCdromDrivers(AddInitramfsModules):
    """The CONTEXT CD-ROM must be there when cloud-init's local stage looks for it, early in boot:
    its drivers (IDE on QEMU's pc machine, SATA on q35 and most clouds) go into the initramfs."""

    description = "Adding the CD-ROM drivers to the initramfs, for OpenNebula's context"
    modules = ("ata_piix", "ahci", "sr_mod", "isofs")


class ConfigureOpenNebula(Task):
    description = "Reading OpenNebula's context with cloud-init"
    phase = Phase.SYSTEM_MODIFICATION

    @classmethod
    def run(cls, info: BuildInfo) -> None:
        (info.target / "etc/cloud/cloud.cfg.d/10_vzstages_opennebula.cfg").write_text(
            "# vzstages opennebula plugin\n" + json.dumps({"datasource_list": ["OpenNebula", "None"]}) + "\n"
        )
