"""Oracle Cloud Infrastructure: a QCOW2 that OCI imports (`oci compute image import`), booting in
paravirtualized mode with virtio drivers, the cloud kernel and cloud-init's Oracle datasource.

bootstrap-vz built for the retired Oracle Cloud "Classic" and uploaded with its Swift API; its
`credentials`, `container` and `verify` settings are refused with what replaced them."""

from __future__ import annotations

from ...common.cloud_init import InstallCloudInit
from ...common.groups import add_boot_tasks
from ...manifest import Manifest, Problem
from ...model.taskset import TaskSet
from .tasks import ConfigureOracle, ConvertImage, InstallKernel, WriteInitramfsModules

CLASSIC = (
    "Oracle Cloud Classic and its Swift uploads are retired; vzstages builds NAME.qcow2 for today's "
    "OCI: upload it to Object Storage (the OCI CLI's `oci os object put`, or any S3 client on its "
    "S3-compatible endpoint) and import it with `oci compute image import from-object`"
)


def validate(manifest: Manifest) -> list[Problem]:
    problems = [
        Problem(("provider", key), CLASSIC)
        for key in ("credentials", "container", "verify")
        if manifest.has(f"provider.{key}")
    ]
    if manifest.get("system.architecture") not in ("amd64", "arm64"):
        problems.append(Problem(("system", "architecture"), "OCI images are amd64 or arm64"))
    return problems


def resolve_tasks(taskset: TaskSet, manifest: Manifest) -> None:
    add_boot_tasks(taskset, manifest)
    taskset.add(WriteInitramfsModules, InstallKernel, InstallCloudInit, ConfigureOracle, ConvertImage)
