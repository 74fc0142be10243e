"""ntp: time synchronisation with systemd-timesyncd, against the manifest's servers if given."""

from __future__ import annotations

from ...common.apt import AptInstall
from ...manifest import Manifest
from ...model.info import BuildInfo
from ...model.phases import Phase
from ...model.task import Task
from ...model.taskset import TaskSet


class InstallTimesyncd(AptInstall):
    description = "Installing systemd-timesyncd"
    packages = ("systemd-timesyncd",)


class ConfigureTimeServers(Task):
    description = "Configuring the time servers"
    phase = Phase.SYSTEM_MODIFICATION
    reads = ("plugins.ntp.servers",)

    @classmethod
    def run(cls, info: BuildInfo) -> None:
        servers = info.manifest.get("plugins.ntp.servers")
        if servers:
            conf = info.target / "etc/systemd/timesyncd.conf.d"
            conf.mkdir(parents=True, exist_ok=True)
            (conf / "vzstages.conf").write_text(f"[Time]\nNTP={' '.join(servers)}\n")
        info.chroot(["systemctl", "enable", "systemd-timesyncd.service"])


def resolve_tasks(taskset: TaskSet, manifest: Manifest) -> None:
    taskset.add(InstallTimesyncd, ConfigureTimeServers)
