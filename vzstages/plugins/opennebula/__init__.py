"""opennebula: OpenNebula contextualization through cloud-init's OpenNebula datasource, which
reads the CONTEXT CD-ROM (context.sh) for the hostname, SSH keys and network. bootstrap-vz
installed one-context, which Debian does not carry; the plugin has no settings, as before."""

from __future__ import annotations

from ...common.cloud_init import InstallCloudInit
from ...manifest import Manifest
from ...model.taskset import TaskSet
from .tasks import ConfigureOpenNebula, InstallSudo, LoadCdromDrivers


def resolve_tasks(taskset: TaskSet, manifest: Manifest) -> None:
    taskset.add(InstallCloudInit, InstallSudo, ConfigureOpenNebula, LoadCdromDrivers)
