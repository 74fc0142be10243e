"""An arm64 EC2 image (manifests/ec2-arm64.yml), built on this amd64 host through qemu-user: UEFI
firmware boots grub from its EFI system partition, and the root grows on a bigger NVMe disk.

The file sorts last on purpose: the build started with the session (see `background_builds`)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from vzstages.boottest import boot
from vzstages.build import load_plan

from .conftest import BackgroundBuild, nothing_left
from .test_ec2 import root_partition

pytestmark = pytest.mark.system


def test_arm64_uefi_image_boots_from_its_efi_partition_on_nvme_and_grows(
    arm64_build: BackgroundBuild, tmp_path
):
    output = arm64_build.wait(timeout=2400)
    assert "os       running" in output and "image    done" in output, output
    nothing_left(arm64_build.cache)
    plan = load_plan(arm64_build.manifest, arm64_build.cache, publish=False)
    image = arm64_build.workspace / f"{plan.manifest.image_name}.raw"
    table = json.loads(
        subprocess.run(["sfdisk", "--json", str(image)], capture_output=True, text=True).stdout
    )
    esp, root = table["partitiontable"]["partitions"]
    assert esp["type"] == "C12A7328-F80D-11D2-BA4B-00A0C93EC93B" and esp["name"] == "efi"
    assert root["name"] == "root"
    listing = subprocess.run(
        ["mdir", "-b", "-i", f"{image}@@{esp['start'] * 512}", "::EFI/BOOT"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "BOOTAA64.EFI" in listing.upper(), listing

    disk = tmp_path / "arm64.raw"
    shutil.copyfile(image, disk)
    subprocess.run(["qemu-img", "resize", "-q", "-f", "raw", str(disk), "3G"], check=True)
    report = boot(
        disk,
        hostname="debian",
        disk_interface="nvme",
        snapshot=False,
        architecture="arm64",
        firmware="uefi",
        timeout=900,
        console_log=tmp_path / "console.log",
        # Under emulation the root may grow after the login prompt: wait for it.
        until=[re.compile(r"The filesystem on /dev/nvme0n1p2 is now \d+")],
    )
    assert report.ok, (report.missing, report.failure, report.console[-3000:])
    assert report.facts["kernel"].endswith("-cloud-arm64"), report.facts["kernel"]
    assert "grew partition 2 of /dev/nvme0n1" in report.console
    assert "Mounted boot-efi.mount - /boot/efi" in report.console  # the ESP, from fstab
    grown = root_partition(disk)
    assert grown["start"] + grown["size"] >= (3 << 30) // 512 - 2048, grown
