"""vagrant: the VirtualBox image also as a Vagrant box (NAME.box: box.ovf, a streamOptimized
vmdk, Vagrantfile, metadata.json), with the `vagrant` user Vagrant logs in as."""

from __future__ import annotations

from ...manifest import Manifest, Problem
from ...model.taskset import TaskSet
from .tasks import CreateVagrantUser, InstallVagrantPackages, PackageBox


def validate(manifest: Manifest) -> list[Problem]:
    if manifest.provider != "virtualbox":
        return [
            Problem(
                ("plugins", "vagrant"),
                f"Vagrant boxes are built for the virtualbox provider, not {manifest.provider}",
            )
        ]
    if manifest.get("system.architecture") not in ("amd64", "i386"):
        return [Problem(("system", "architecture"), "VirtualBox boxes are amd64 or i386")]
    return []


def resolve_tasks(taskset: TaskSet, manifest: Manifest) -> None:
    taskset.add(InstallVagrantPackages, CreateVagrantUser, PackageBox)
