"""EC2 on real builds: manifests/ec2.yml built, its root grown at boot on a bigger disk (virtio;
bootstrap-vz's extlinux on an unpartitioned volume, on NVMe), settings edits that reuse
debootstrap, and publishing to a moto server on 127.0.0.1."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import boto3
import pytest

from vzstages.boottest import boot
from vzstages.build import load_plan

from ..conftest import REPO
from .conftest import BOOT_TIMEOUT, nothing_left, vzstages, with_workspace

pytestmark = pytest.mark.system

REGION = "eu-west-1"
DESCRIPTION = "  description: Debian {system.release} {system.architecture}\n"


@pytest.fixture(scope="module")
def ec2_image(cache, workspace, tmp_path_factory) -> Path:
    """manifests/ec2.yml (2 GiB root) built without publishing; its raw image."""
    manifest = with_workspace(
        REPO / "manifests/ec2.yml", workspace, tmp_path_factory.mktemp("ec2") / "ec2.yml"
    )
    out = vzstages("build", "--no-publish", str(manifest), cache=cache)
    assert "publish" not in out.stderr
    nothing_left(cache)
    plan = load_plan(manifest, cache, publish=False)
    image = workspace / f"{plan.manifest.image_name}.raw"
    assert image.stat().st_size < 2.1 * (1 << 30)
    return image


def root_partition(image: Path) -> dict:
    table = json.loads(
        subprocess.run(["sfdisk", "--json", str(image)], capture_output=True, text=True).stdout
    )
    return table["partitiontable"]["partitions"][-1]


def test_root_grows_to_fill_a_bigger_disk(ec2_image, tmp_path):
    image = ec2_image
    disk = tmp_path / "bigger.raw"
    shutil.copyfile(image, disk)
    subprocess.run(["qemu-img", "resize", "-q", "-f", "raw", str(disk), "4G"], check=True)
    before = root_partition(disk)

    first = boot(disk, hostname="debian", disk_interface="virtio", snapshot=False, timeout=BOOT_TIMEOUT)
    assert first.ok, (first.missing, first.failure, first.console[-3000:])
    assert "grew partition 2 of /dev/vda" in first.console
    assert "resized filesystem to" in first.console or "is now" in first.console
    grown = root_partition(disk)
    sectors = (4 << 30) // 512
    assert grown["start"] == before["start"]
    assert grown["start"] + grown["size"] >= sectors - 2048, grown  # up to the backup GPT
    blocks = int(first.console.split("The filesystem on /dev/vda2 is now ")[1].split()[0])
    assert blocks * 4096 >= grown["size"] * 512 - (1 << 20)


def test_bootstrap_vz_hvm_layout_extlinux_on_an_unpartitioned_volume_boots_on_nvme_and_grows(
    cache, workspace, tmp_path
):
    """bootstrap-vz's official EC2 HVM images: extlinux, and the filesystem on the whole volume
    (`partitions: type: none`). On an NVMe disk (as on Nitro instances) bigger than the image,
    it boots and the filesystem grows to the disk (there is no partition to grow first)."""
    manifest = with_workspace(
        REPO / "manifests/ec2.yml",
        workspace,
        tmp_path / "ec2-extlinux.yml",
        edit={
            "  bootloader: grub\n": "  bootloader: extlinux\n",
            "    type: gpt\n": "    type: none\n",
            "name: debian-": "name: extlinux-debian-",
        },
    )
    vzstages("build", "--no-publish", str(manifest), cache=cache)
    nothing_left(cache)
    plan = load_plan(manifest, cache, publish=False)
    disk = tmp_path / "bigger.raw"
    shutil.move(workspace / f"{plan.manifest.image_name}.raw", disk)
    # No partition table: the filesystem starts at sector 0 (behind extlinux's boot sector).
    probe = subprocess.run(["blkid", "-p", "-o", "export", str(disk)], capture_output=True, text=True)
    assert "TYPE=ext4" in probe.stdout and "PTTYPE" not in probe.stdout, probe.stdout
    subprocess.run(["qemu-img", "resize", "-q", "-f", "raw", str(disk), "4G"], check=True)
    report = boot(disk, hostname="debian", disk_interface="nvme", snapshot=False, timeout=BOOT_TIMEOUT)
    assert report.ok, (report.missing, report.failure, report.console[-3000:])
    assert "SYSLINUX" in report.console or "EXTLINUX" in report.console, report.console[:2000]
    blocks = int(report.console.split("The filesystem on /dev/nvme0n1 is now ")[1].split()[0])
    assert blocks * 4096 == 4 << 30


def test_editing_expand_root_or_cloud_init_reuses_os_and_packages(ec2_image, cache, workspace, tmp_path):
    edited = with_workspace(
        REPO / "manifests/ec2.yml",
        workspace,
        tmp_path / "ec2-edited.yml",
        edit={"tags:\n": "plugins:\n  expand_root:\n    filesystem_type: ext4\ntags:\n"},
    )
    plan = vzstages("plan", "--no-publish", str(edited), cache=cache).stdout
    will = dict(re.findall(r"^  (\w+) +(cached|run) ", plan, re.MULTILINE))
    assert will["os"] == will["packages"] == "cached", plan
    assert will["system"] == "run" and "manifest key plugins.expand_root" in plan, plan
    out = vzstages("build", "--no-publish", str(edited), cache=cache)
    assert "mmdebstrap" not in out.stderr
    assert "built system, cleanup, image" in out.stdout, out.stdout


def test_publish_registers_once_and_prints_the_ami(ec2_image, cache, workspace, tmp_path, moto_endpoint):
    publishing = with_workspace(
        REPO / "manifests/ec2.yml",
        workspace,
        tmp_path / "ec2-publish.yml",
        edit={
            DESCRIPTION: DESCRIPTION
            + f"  region: {REGION}\n  endpoint_url: {moto_endpoint}\n"
            + "  credentials: {access-key: testing, secret-key: testing}\n"
        },
    )
    out = vzstages("build", str(publishing), cache=cache)
    # The checkpoints were reused (the image file is rewritten if the edit test above overwrote it).
    assert re.search(r"^built (image, )?publish in", out.stdout, re.MULTILINE), out.stdout
    result = json.loads(out.stdout.strip().splitlines()[-1])
    ec2 = boto3.client(
        "ec2",
        region_name=REGION,
        endpoint_url=moto_endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    ours = [{"Name": "tag-key", "Values": ["vzstages:publish-key"]}]
    images = ec2.describe_images(Owners=["self"], Filters=ours)["Images"]
    assert [i["ImageId"] for i in images] == [result["image_id"]]
    assert images[0]["Name"] == load_plan(publishing, cache).manifest.image_name
    assert images[0]["Description"] == "Debian bookworm amd64"
    tags = {t["Key"]: t["Value"] for t in images[0]["Tags"]}
    assert tags["Name"] == "Debian bookworm"
    snapshot = ec2.describe_snapshots(SnapshotIds=[result["snapshot_id"]])["Snapshots"][0]
    gib = -(-(workspace / f"{result['name']}.raw").stat().st_size // (1 << 30))
    assert snapshot["State"] == "completed" and snapshot["VolumeSize"] == gib
    assert {t["Key"] for t in snapshot["Tags"]} >= {"Name", "vzstages:image-key"}
    # Both lead back to the image's digest, which is its provenance's subject.
    built = json.loads((workspace / f"{result['name']}.json").read_text())
    digest = built["images"][0]["sha256"]
    assert tags["vzstages:image-sha256"] == digest
    assert {t["Key"]: t["Value"] for t in snapshot["Tags"]}["vzstages:image-sha256"] == digest
    assert set(built["evidence"]["files"]) == {"spdx", "cyclonedx", "provenance"}

    # A rerun is up to date and still prints the AMI.
    again = vzstages("build", str(publishing), cache=cache)
    assert "nothing to do" in again.stdout
    assert json.loads(again.stdout.strip().splitlines()[-1]) == result

    # Without its local record (a clean workspace, another machine), publishing again finds the
    # AMI in the region instead of registering a second one.
    (workspace / f"{result['name']}.ami.json").unlink()
    third = vzstages("build", str(publishing), cache=cache)
    assert "already registered" in third.stderr and "already holds this image" in third.stderr
    assert json.loads(third.stdout.strip().splitlines()[-1]) == result
    assert len(ec2.describe_images(Owners=["self"], Filters=ours)["Images"]) == 1
    nothing_left(cache)
