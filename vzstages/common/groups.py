"""The task groups providers pick from (as bootstrap-vz's task_groups).

Kept out of the package's __init__: every common module imports its package, and a task's code
fingerprint covers the modules it imports, so an __init__ that imported every common module would
tie every task's stage key to every other common task's code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import apt, bootable, bootstrap, cleanup, extlinux, grub, partitions, system

if TYPE_CHECKING:
    from ..manifest import Manifest
    from ..model.taskset import TaskSet


def resolve_tasks(taskset: TaskSet, manifest: Manifest) -> None:
    """The tasks every image needs, whatever the provider."""
    taskset.add(
        partitions.PartitionDisk,
        partitions.FormatPartitions,
        bootstrap.Bootstrap,
        bootstrap.PrepareChroot,
        bootstrap.SetMountModes,
        apt.WriteAptSources,
        apt.WriteAptSettings,
        apt.AptUpdate,
        apt.InstallPackages,
        system.InstallSystemPackages,
        system.SetLocale,
        system.SetTimezone,
        system.SetHostname,
        cleanup.CleanApt,
        cleanup.RemoveBuildSettings,
        cleanup.MakeGeneric,
        cleanup.ClearLogsAndTemp,
    )
    if manifest.layout.lvm is not None:
        taskset.add(bootable.InstallLvm)
    install = manifest.get("packages.install") or []
    if manifest.get("packages.install_standard") or any(p.endswith(".deb") for p in install):
        taskset.add(apt.InstallLocalPackages)


def add_boot_tasks(taskset: TaskSet, manifest: Manifest) -> None:
    """Kernel, fstab, network, SSH and the bootloader: for providers whose images boot."""
    taskset.add(
        bootable.InstallBootPackages,
        bootable.InstallInitramfsTools,
        bootable.InstallSshServer,
        bootable.RegenerateSshHostKeys,
        system.ConfigureNetwork,
        system.WriteFstab,
    )
    bootloader = manifest.get("system.bootloader")
    if bootloader == "grub" and manifest.firmware in ("uefi", "hybrid"):
        taskset.add(grub.InstallGrubEfiPackages, grub.InstallGrubEfi)
    if bootloader == "grub" and manifest.firmware in ("bios", "hybrid"):
        taskset.add(grub.InstallGrubPackages, grub.InstallGrub)
    elif bootloader == "extlinux":
        taskset.add(extlinux.InstallExtlinuxPackages, extlinux.InstallExtlinux)
