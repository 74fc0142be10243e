"""salt: a Salt minion from PyPI in a virtualenv under /opt/salt (Salt is not packaged in Debian
12 or 13), with a systemd unit, and the grains and master bootstrap-vz wrote."""

from __future__ import annotations

from ...manifest import Manifest, Problem
from ...model.taskset import TaskSet
from .tasks import ConfigureMinion, InstallMinion, InstallPythonVenv


def validate(manifest: Manifest) -> list[Problem]:
    source = manifest.get("plugins.salt.install_source", "pypi")
    if source != "pypi":
        return [
            Problem(
                ("plugins", "salt", "install_source"),
                f"{source}: bootstrap-vz's salt-bootstrap script and its {source} packages are not used; "
                "Salt is not in Debian 12/13, so the minion is installed from PyPI into /opt/salt "
                "(set `version` to pin a release, or leave install_source out)",
            )
        ]
    return []


def resolve_tasks(taskset: TaskSet, manifest: Manifest) -> None:
    taskset.add(InstallPythonVenv, InstallMinion, ConfigureMinion)
