"""expand_root: grow the root partition (growpart, from the release's cloud-guest-utils) and its
filesystem (resize2fs or xfs_growfs) to the disk at every boot, so an image booted on a bigger
volume uses all of it. By default the disk and partition are found from the mounted root at boot,
so the same image works on xvda, nvme0n1, vda or sda."""

from __future__ import annotations

from ...manifest import Manifest, Problem
from ...model.taskset import TaskSet
from .tasks import InstallExpandRoot, InstallGrowpart


def validate(manifest: Manifest) -> list[Problem]:
    settings = manifest.get("plugins.expand_root") or {}
    if manifest.get("volume.backing") == "lvm":
        return [
            Problem(
                ("plugins", "expand_root"),
                "growing a root on LVM at boot is not supported; size the LV up front",
            )
        ]
    if ("root_device" in settings) != ("root_partition" in settings):
        return [
            Problem(("plugins", "expand_root"), "give root_device and root_partition together, or neither")
        ]
    fs = settings.get("filesystem_type")
    root_fs = manifest.get("volume.partitions.root.filesystem")
    if fs and fs != root_fs:
        return [
            Problem(
                ("plugins", "expand_root", "filesystem_type"),
                f"{fs} does not match the root filesystem ({root_fs})",
            )
        ]
    return []


def resolve_tasks(taskset: TaskSet, manifest: Manifest) -> None:
    taskset.add(InstallGrowpart, InstallExpandRoot)
