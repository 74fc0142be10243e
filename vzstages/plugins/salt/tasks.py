from __future__ import annotations

import contextlib
from collections.abc import Iterator

import yaml

from ...common.apt import AptInstall, apt_get, apt_install
from ...common.pip import pip_install
from ...model.info import BuildInfo
from ...model.phases import Phase
from ...model.task import Task

MINION_UNIT = """\
[Unit]
Description=The Salt minion (vzstages, from PyPI in /opt/salt)
After=network-online.target
Wants=network-online.target

[Service]
Type=notify
NotifyAccess=all
ExecStart=/opt/salt/bin/salt-minion
KillMode=process
Restart=on-failure

[Install]
WantedBy=multi-user.target
"""


# Some of Salt's dependencies on PyPI are sources only (timelib): pip compiles them.
BUILD_TOOLS = ("gcc", "python3-dev")


@contextlib.contextmanager
def build_tools(info: BuildInfo) -> Iterator[None]:
    """A compiler for the install only: what it added is purged after, what the manifest had stays."""
    listed = info.chroot(["dpkg-query", "-W", "-f", "${Package} ${db:Status-Status}\\n"])
    present = {line.split()[0] for line in listed.splitlines() if line.endswith(" installed")}
    added = [p for p in BUILD_TOOLS if p not in present]
    apt_install(info, added)
    try:
        yield
    finally:
        if added:
            apt_get(info, ["purge", "--autoremove", *added])


class InstallPythonVenv(AptInstall):
    description = "Installing Python's venv for the Salt minion"
    packages = ("python3-venv",)


class InstallMinion(Task):
    description = "Installing the Salt minion from PyPI into /opt/salt"
    phase = Phase.USER_MODIFICATION
    reads = ("plugins.salt.version",)

    @classmethod
    def run(cls, info: BuildInfo) -> None:
        version = info.manifest.get("plugins.salt.version")
        info.chroot(["python3", "-m", "venv", "/opt/salt"])
        with build_tools(info):
            pip_install(info, ["/opt/salt/bin/pip"], ["-q", f"salt=={version}" if version else "salt"])
        for tool in ("salt-call", "salt-minion"):
            link = info.target / "usr/local/bin" / tool
            link.unlink(missing_ok=True)
            link.symlink_to(f"/opt/salt/bin/{tool}")
        (info.target / "etc/systemd/system/salt-minion.service").write_text(MINION_UNIT)
        info.chroot(["systemctl", "enable", "salt-minion.service"])


class ConfigureMinion(Task):
    description = "Writing the Salt minion's grains and master"
    phase = Phase.USER_MODIFICATION
    predecessors = (InstallMinion,)
    reads = ("plugins.salt.grains", "plugins.salt.master")

    @classmethod
    def run(cls, info: BuildInfo) -> None:
        salt = info.target / "etc/salt"
        (salt / "minion.d").mkdir(parents=True, exist_ok=True)
        grains = info.manifest.get("plugins.salt.grains")
        if grains:
            (salt / "grains").write_text(yaml.safe_dump(grains, default_flow_style=False))
        master = info.manifest.get("plugins.salt.master")
        if master:
            (salt / "minion.d/master.conf").write_text(yaml.safe_dump({"master": master}))
