"""cloud_init: cloud-init from the target release, with the default user, datasources and
module lists the manifest gives (bootstrap-vz's settings)."""

from __future__ import annotations

from ...common.cloud_init import InstallCloudInit
from ...manifest import Manifest
from ...model.taskset import TaskSet
from .tasks import ConfigureCloudInit


def resolve_tasks(taskset: TaskSet, manifest: Manifest) -> None:
    taskset.add(InstallCloudInit, ConfigureCloudInit)
