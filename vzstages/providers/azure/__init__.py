"""Microsoft Azure: a fixed VHD of a whole number of MiB, Hyper-V drivers in the initramfs, the
cloud kernel, Debian's waagent and cloud-init with the Azure datasource, hyperv-daemons and chrony
on the Hyper-V PTP clock, as Debian's own Azure images carry."""

from __future__ import annotations

from ...common.groups import add_boot_tasks
from ...manifest import Manifest, Problem, input_file_problems
from ...model.taskset import TaskSet
from .tasks import ConfigureAzure, ConvertImage, InstallAgents, InstallKernel, WriteInitramfsModules


def validate(manifest: Manifest) -> list[Problem]:
    problems = []
    if manifest.get("system.architecture") not in ("amd64", "arm64"):
        problems.append(Problem(("system", "architecture"), "Azure images are amd64 or arm64"))
    if manifest.has("provider.waagent.version"):
        manifest.warnings.append(
            f"{manifest.doc.where(('provider', 'waagent', 'version'))}: accepted and not used: the image "
            "gets Debian's waagent package, which follows the release (no tarball from GitHub)"
        )
    if manifest.get("provider.waagent.conf"):
        problems += input_file_problems(manifest, ("provider", "waagent", "conf"), "waagent.conf", 1 << 20)
    return problems


def resolve_tasks(taskset: TaskSet, manifest: Manifest) -> None:
    add_boot_tasks(taskset, manifest)
    taskset.add(WriteInitramfsModules, InstallKernel, InstallAgents, ConfigureAzure, ConvertImage)
