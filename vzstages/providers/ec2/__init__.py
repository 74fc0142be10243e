"""Amazon EC2: HVM images for amd64 (legacy BIOS, or UEFI with system.firmware: uefi) and arm64
(UEFI), with ENA and NVMe drivers, serial console, grub, raw output, published as an AMI (publish.py)."""

from __future__ import annotations

from ...common.groups import add_boot_tasks
from ...manifest import Manifest, Problem
from ...model.taskset import TaskSet
from . import publish
from .tasks import ConvertImage, InstallKernel, WriteInitramfsModules

# Instances often boot on a larger EBS volume than the image: grow root by default.
DEFAULT_PLUGINS = ("expand_root",)


def validate(manifest: Manifest) -> list[Problem]:
    problems = []
    if manifest.get("provider.virtualization", "hvm") == "pvm":
        problems.append(
            Problem(
                ("provider", "virtualization"),
                "paravirtual (pvm) AMIs are retired on EC2; use virtualization: hvm",
            )
        )
    if manifest.get("volume.backing") == "s3":
        problems.append(
            Problem(("volume", "backing"), "S3 (instance-store) AMIs are retired on EC2; use backing: ebs")
        )
    if manifest.get("system.architecture") not in ("amd64", "arm64"):
        problems.append(Problem(("system", "architecture"), "EC2 images are amd64 or arm64"))
    # pvgrub is refused with its whole fix by the base checks; extlinux boots an unpartitioned
    # volume, as bootstrap-vz's official EC2 HVM manifests did.
    if manifest.get("system.bootloader") not in ("grub", "extlinux", "pvgrub"):
        problems.append(Problem(("system", "bootloader"), "EC2 HVM images boot with grub or extlinux"))
    return problems


def resolve_tasks(taskset: TaskSet, manifest: Manifest) -> None:
    add_boot_tasks(taskset, manifest)
    taskset.add(
        WriteInitramfsModules, InstallKernel, ConvertImage, publish.UploadSnapshot, publish.RegisterImage
    )
