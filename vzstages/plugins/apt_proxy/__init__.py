"""apt_proxy: fetch packages through an HTTP proxy during the build, and keep it if asked.

During the build the proxy reaches apt from a file outside the image (common/apt.py), so its
password is in no checkpoint; `persistent: true` writes it into the image for the machine's own
apt, as asked. debootstrap fetches directly: its downloads are shared through the host package
cache anyway.
"""

from __future__ import annotations

from ...common.apt import AptUpdate, WriteAptSources
from ...manifest import Manifest
from ...model.info import BuildInfo
from ...model.phases import Phase
from ...model.task import Task
from ...model.taskset import TaskSet

PROXY_CONF = "etc/apt/apt.conf.d/02vzstages-proxy"


class ConfigureAptProxy(Task):
    description = "Configuring the apt proxy"
    phase = Phase.PACKAGE_INSTALLATION
    predecessors = (WriteAptSources,)
    successors = (AptUpdate,)
    reads = ("plugins.apt_proxy",)

    @classmethod
    def run(cls, info: BuildInfo) -> None:
        s = info.manifest.get("plugins.apt_proxy")
        auth = f"{s['username']}:{s.get('password', '')}@" if s.get("username") else ""
        setting = f'Acquire::http::Proxy "http://{auth}{s["address"]}:{s["port"]}";'
        if s.get("persistent"):
            (info.target / PROXY_CONF).write_text(setting + "\n", 0o600 if auth else 0o644)
        else:
            info.apt_config.append(setting)


def resolve_tasks(taskset: TaskSet, manifest: Manifest) -> None:
    taskset.add(ConfigureAptProxy)
