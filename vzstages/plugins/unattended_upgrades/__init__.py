"""unattended_upgrades: install security upgrades automatically, at the manifest's intervals."""

from __future__ import annotations

from ...common.apt import AptInstall
from ...manifest import Manifest
from ...model.info import BuildInfo
from ...model.phases import Phase
from ...model.task import Task
from ...model.taskset import TaskSet


class InstallUnattendedUpgrades(AptInstall):
    description = "Installing unattended-upgrades"
    packages = ("unattended-upgrades",)


class ConfigureUpgradeIntervals(Task):
    description = "Setting the unattended upgrade intervals"
    phase = Phase.SYSTEM_MODIFICATION
    reads = ("plugins.unattended_upgrades",)

    @classmethod
    def run(cls, info: BuildInfo) -> None:
        s = info.manifest.get("plugins.unattended_upgrades")
        (info.target / "etc/apt/apt.conf.d/02periodic").write_text(
            'APT::Periodic::Enable "1";\n'
            f'APT::Periodic::Update-Package-Lists "{s["update_interval"]}";\n'
            f'APT::Periodic::Download-Upgradeable-Packages "{s["download_interval"]}";\n'
            f'APT::Periodic::Unattended-Upgrade "{s["upgrade_interval"]}";\n'
        )


def resolve_tasks(taskset: TaskSet, manifest: Manifest) -> None:
    taskset.add(InstallUnattendedUpgrades, ConfigureUpgradeIntervals)
