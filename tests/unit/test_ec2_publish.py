"""EC2 publishing against a moto server on 127.0.0.1: snapshot upload with the EBS direct APIs,
AMI registration, idempotence, and the errors that stop a build before it starts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vzstages.cache.store import Store
from vzstages.compiler.keys import secret_hash
from vzstages.compiler.plan import compile_plan
from vzstages.manifest import load_manifest
from vzstages.model.view import ManifestView
from vzstages.providers.ec2 import aws, publish

from ..conftest import REPO, TEST_KEY

BLOCK = aws.BLOCK_SIZE
REGION = "eu-west-1"
KEYS = {"access_key": "testing", "secret_key": "testing"}


def sparse_image(path: Path, size: int, data_at: dict[int, bytes]) -> Path:
    with open(path, "wb") as f:
        f.truncate(size)
        for offset, data in data_at.items():
            f.seek(offset)
            f.write(data)
    return path


def test_data_blocks_skip_holes_and_zero_blocks(tmp_path: Path) -> None:
    image = sparse_image(
        tmp_path / "disk.raw",
        64 * BLOCK,
        {
            0: b"MBR",
            5 * BLOCK + 100: b"x" * (BLOCK),  # spans blocks 5 and 6
            20 * BLOCK: b"\0" * BLOCK,  # written, but zeros: nothing to send
            63 * BLOCK + BLOCK - 1: b"z",  # the very last byte
        },
    )
    blocks = list(aws.data_blocks(image))
    assert [b.index for b in blocks] == [0, 5, 6, 63]
    assert all(len(b.data) == BLOCK for b in blocks)
    assert blocks[0].data.startswith(b"MBR") and blocks[-1].data.endswith(b"z")


def test_upload_and_register_then_publish_again_reuses_both(tmp_path: Path, moto_endpoint: str) -> None:
    endpoint = moto_endpoint
    image = sparse_image(
        tmp_path / "disk.raw", 3 * aws.GIB // 2, {0: b"boot", 700 * BLOCK: os.urandom(BLOCK)}
    )
    conn = aws.Connection(region=REGION, endpoint_url=endpoint, **KEYS)
    said: list[str] = []
    snapshot = aws.upload_snapshot(
        conn, image, "imagekey1", "Debian test", {"Name": "test"}, timeout=60, say=said.append
    )
    ec2 = conn.client("ec2")
    found = ec2.describe_snapshots(SnapshotIds=[snapshot])["Snapshots"][0]
    assert found["State"] == "completed"
    assert found["VolumeSize"] == 2  # 1.5 GiB rounds up
    assert {t["Key"]: t["Value"] for t in found["Tags"]} == {"Name": "test", aws.IMAGE_KEY_TAG: "imagekey1"}
    ebs = conn.client("ebs")
    listed = ebs.list_snapshot_blocks(SnapshotId=snapshot)["Blocks"]
    assert sorted(b["BlockIndex"] for b in listed) == [0, 700]
    block = ebs.get_snapshot_block(SnapshotId=snapshot, BlockIndex=700, BlockToken=listed[-1]["BlockToken"])
    with open(image, "rb") as f:
        f.seek(700 * BLOCK)
        assert block["BlockData"].read() == f.read(BLOCK)

    request = aws.AmiRequest(
        name="debian-test-1",
        description="Debian test",
        architecture="amd64",
        boot_mode="legacy-bios",
        ena=True,
        sriov=False,
        tags={"Name": "test", "Team": "platform"},
    )
    ami = aws.register_ami(conn, request, snapshot, "publishkey1", timeout=60, say=said.append)
    images = ec2.describe_images(Owners=["self"])["Images"]
    assert [i["ImageId"] for i in images] == [ami]
    assert images[0]["Name"] == "debian-test-1" and images[0]["State"] == "available"
    tags = {t["Key"]: t["Value"] for t in images[0]["Tags"]}
    assert tags == {"Name": "test", "Team": "platform", "vzstages:publish-key": "publishkey1"}

    # Publishing the same build again finds both instead of uploading or registering.
    said.clear()
    assert aws.upload_snapshot(conn, image, "imagekey1", "d", {}, timeout=60, say=said.append) == snapshot
    assert aws.register_ami(conn, request, snapshot, "publishkey1", timeout=60, say=said.append) == ami
    assert len(ec2.describe_images(Owners=["self"])["Images"]) == 1
    ours = [{"Name": f"tag:{aws.IMAGE_KEY_TAG}", "Values": ["imagekey1"]}]
    assert len(ec2.describe_snapshots(OwnerIds=["self"], Filters=ours)["Snapshots"]) == 1
    assert any("already" in line for line in said), said

    # Another build under the same AMI name is refused, naming the AMI in the way.
    with pytest.raises(aws.PublishError, match=f"already exists in {REGION} \\({ami}\\)"):
        aws.register_ami(conn, request, snapshot, "publishkey2", timeout=60, say=said.append)


def test_register_arguments_carry_architecture_root_device_ena_and_boot_mode() -> None:
    request = aws.AmiRequest(
        name="n",
        description="d",
        architecture="amd64",
        boot_mode="legacy-bios",
        ena=True,
        sriov=True,
        tags={},
    )
    args = request.register_arguments("snap-1", "k")
    assert args["Architecture"] == "x86_64"
    assert args["RootDeviceName"] == "/dev/xvda"
    assert args["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"] == "snap-1"
    assert args["BlockDeviceMappings"][0]["DeviceName"] == "/dev/xvda"
    assert args["EnaSupport"] is True and args["SriovNetSupport"] == "simple"
    assert args["BootMode"] == "legacy-bios" and args["VirtualizationType"] == "hvm"


def test_no_credentials_is_a_clear_error_before_the_build(moto_endpoint: str) -> None:
    conn = aws.Connection(region=REGION, endpoint_url=moto_endpoint)
    with pytest.raises(aws.PublishError, match=r"no AWS credentials.*--no-publish"):
        aws.check_credentials(conn)


def test_no_region_is_a_clear_error(moto_endpoint: str) -> None:
    with pytest.raises(aws.PublishError, match="no AWS region"):
        aws.resolve_region(None)


def test_manifest_credentials_are_used_and_hashed_in_the_key(moto_endpoint: str, write_manifest) -> None:
    path = write_manifest(
        f"""\
        name: t
        provider:
          name: ec2
          region: {REGION}
          endpoint_url: {moto_endpoint}
          credentials: {{access-key: AKIDTEST, secret-key: s3cr3t-value}}
        system: {{release: bookworm, architecture: amd64, bootloader: grub, charmap: UTF-8,
                  locale: en_US, timezone: UTC, hostname: h}}
        volume: {{backing: ebs, partitions: {{type: gpt, root: {{filesystem: ext4, size: 2GiB}}}}}}
        """
    )
    manifest = load_manifest(path)
    view = ManifestView(manifest, "t", publish.UploadSnapshot.reads)
    publish.UploadSnapshot.preflight(view)  # credentials from the manifest: no error
    conn = publish.connection(view)
    assert (conn.access_key, conn.region, conn.endpoint_url) == ("AKIDTEST", REGION, moto_endpoint)
    store = Store(path.parent / "cache")
    stage = compile_plan(manifest, store).stage("publish")
    recorded = repr(stage.inputs)
    assert "s3cr3t-value" not in recorded
    assert secret_hash("s3cr3t-value", store.secret_key()) in recorded


def test_no_publish_leaves_out_the_publish_stage() -> None:
    manifest = load_manifest(Path(__file__).resolve().parents[2] / "manifests" / "ec2.yml")
    store = Store(Path("/nonexistent-cache"))
    with_publish = [s.name for s in compile_plan(manifest, store).stages]
    without = [s.name for s in compile_plan(manifest, store, publish=False).stages]
    assert with_publish[-2:] == ["image", "publish"]
    assert without == with_publish[:-1]


def test_arm64_manifest_builds_uefi_grub_and_registers_an_arm64_uefi_ami() -> None:
    manifest = load_manifest(REPO / "manifests/ec2-arm64.yml")
    plan = compile_plan(manifest, Store(Path("/nonexistent")), secret_key=TEST_KEY)
    names = {t.name() for s in plan.stages for t in s.tasks}
    assert {"common.grub.InstallGrubEfi", "common.grub.InstallGrubEfiPackages"} <= names
    assert "common.grub.InstallGrub" not in names
    register = publish.RegisterImage
    args = register.request(
        ManifestView(manifest, register.name(), register.reads), "img"
    ).register_arguments("snap-1", "k")
    assert args["Architecture"] == "arm64" and args["BootMode"] == "uefi"


def test_ec2_publish_copies_publicly_and_ec2_launch_runs_it(
    tmp_path: Path, write_manifest, moto_endpoint: str
):
    """The publish stage with both plugins, against moto: copies in two more regions (found, not
    copied again, on a rerun), public launch and volume permissions, the region map in S3 and
    in the result, and an instance whose address lands where print_public_ip says."""
    import json

    import boto3

    from vzstages.host import Host
    from vzstages.model.info import BuildInfo
    from vzstages.runtime import run_tasks

    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name=REGION, aws_access_key_id="testing",
                      aws_secret_access_key="testing")  # fmt: skip
    s3.create_bucket(Bucket="amis", CreateBucketConfiguration={"LocationConstraint": REGION})
    path = write_manifest(
        f"""\
        name: debian-publish-test
        provider:
          name: ec2
          region: {REGION}
          endpoint_url: {moto_endpoint}
          credentials: {{access-key: testing, secret-key: testing}}
        system: {{release: bookworm, architecture: amd64, bootloader: grub, hostname: h}}
        volume: {{backing: ebs, partitions: {{type: gpt, root: {{filesystem: ext4, size: 2GiB}}}}}}
        plugins:
          ec2_publish:
            {{regions: [us-east-1, ap-south-1], public: true, manifest_url: 's3://amis/debian.json'}}
          ec2_launch:
            {{instance_type: t3.micro, print_public_ip: ip.txt, tags: {{Name: 'test-{{system.release}}'}}}}
        """
    )
    manifest = load_manifest(path)
    plan = compile_plan(manifest, Store(tmp_path / "cache"), secret_key=TEST_KEY)
    stage = plan.stage("publish")
    workspace = tmp_path / "build"
    workspace.mkdir()
    image = sparse_image(workspace / "debian-publish-test.raw", aws.GIB, {0: b"boot"})

    def publish() -> BuildInfo:
        info = BuildInfo(
            manifest=ManifestView(manifest, "<stage>", ()),
            stage="publish",
            key=stage.key,
            host=Host(),
            layout=manifest.layout,
            workspace=workspace,
            package_cache=tmp_path / "debs",
            runs=tmp_path / "runs",
            image_name=manifest.image_name,
            facts={"image": str(image), "image_key": "imagekey"},
        )
        run_tasks(stage.tasks, manifest, info, {})
        return info

    first = publish()
    amis = first.facts["amis"]
    assert sorted(amis) == ["ap-south-1", REGION, "us-east-1"]
    for region, ami in amis.items():
        ec2 = aws.Connection(region, moto_endpoint, **KEYS).client("ec2")
        image_info = ec2.describe_images(ImageIds=[ami])["Images"][0]
        assert image_info["State"] == "available"
        launch = ec2.describe_image_attribute(ImageId=ami, Attribute="launchPermission")["LaunchPermissions"]
        assert {"Group": "all"} in launch, (region, launch)
    result = json.loads((workspace / "debian-publish-test.ami.json").read_text())
    assert result["amis"] == amis and result["instance_id"].startswith("i-")
    assert json.loads(s3.get_object(Bucket="amis", Key="debian.json")["Body"].read()) == amis
    assert (path.parent / "ip.txt").read_text().strip() == result["address"]
    home = aws.Connection(REGION, moto_endpoint, **KEYS).client("ec2")
    instance = home.describe_instances(InstanceIds=[result["instance_id"]])["Reservations"][0]["Instances"][0]
    assert {"Key": "Name", "Value": "test-bookworm"} in instance["Tags"]

    again = publish()  # a republish finds every copy
    assert again.facts["amis"] == amis
    for region in ("us-east-1", "ap-south-1"):
        ec2 = aws.Connection(region, moto_endpoint, **KEYS).client("ec2")
        assert len(ec2.describe_images(Owners=["self"])["Images"]) == 1
