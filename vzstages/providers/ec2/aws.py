"""The AWS side of publishing: a raw image becomes an EBS snapshot, the snapshot becomes an AMI.

The snapshot is written with the EBS direct APIs (StartSnapshot, PutSnapshotBlock,
CompleteSnapshot) rather than S3 + ImportSnapshot: no bucket and no `vmimport` service role to set
up, only the blocks that hold data are sent (a 2 GiB image with 600 MiB of files uploads 600 MiB),
and the snapshot is ready minutes sooner because AWS has no image to convert.

Both steps are idempotent: the snapshot carries the image stage's key and the AMI the publish
stage's key as tags, and each step first looks for an existing one in the region.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions

from ...errors import VzError

log = logging.getLogger("vzstages.ec2")

BLOCK_SIZE = 512 * 1024  # the EBS direct APIs' fixed block size
GIB = 1 << 30
IMAGE_KEY_TAG = "vzstages:image-key"  # on snapshots: the image stage's key (the disk's content)
IMAGE_DIGEST_TAG = "vzstages:image-sha256"  # on both: the image file's SHA-256, its provenance's subject
PUBLISH_KEY_TAG = "vzstages:publish-key"  # on AMIs: the publish stage's key (content + settings)
ARCHITECTURES = {"amd64": "x86_64", "arm64": "arm64"}
ROOT_DEVICE = "/dev/xvda"


class PublishError(VzError):
    pass


@dataclass(frozen=True)
class Connection:
    region: str
    endpoint_url: str | None
    access_key: str | None = None
    secret_key: str | None = None
    session_token: str | None = None

    def session(self) -> boto3.session.Session:
        # Unset keys fall through to boto3's usual chain: environment, profile, instance role.
        return boto3.session.Session(
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            aws_session_token=self.session_token,
            region_name=self.region,
        )

    def client(self, service: str) -> Any:
        return self.session().client(service, endpoint_url=self.endpoint_url)

    def in_region(self, region: str) -> Connection:
        return replace(self, region=region)


def resolve_region(region: str | None) -> str:
    """The manifest's region, else AWS_REGION, else boto3's (AWS_DEFAULT_REGION, the profile)."""
    resolved = region or os.environ.get("AWS_REGION") or boto3.session.Session().region_name
    if not resolved:
        raise PublishError(
            "no AWS region: set provider.region in the manifest, or AWS_REGION in the environment"
        )
    return resolved


def check_credentials(connection: Connection) -> None:
    """Fail before any work when neither the manifest nor boto3's chain has credentials."""
    if connection.session().get_credentials() is None:
        raise PublishError(
            "no AWS credentials for publishing: set provider.credentials in the manifest, or "
            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a profile; or build with --no-publish"
        )


@dataclass(frozen=True)
class Block:
    index: int
    data: bytes

    def checksum(self) -> str:
        return base64.b64encode(hashlib.sha256(self.data).digest()).decode()


def data_blocks(path: Path) -> Iterator[Block]:
    """The image's 512 KiB blocks that hold anything but zeros, skipping holes without reading them."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        fd = f.fileno()
        offset = 0
        while offset < size:
            try:
                start = os.lseek(fd, offset, os.SEEK_DATA)
            except OSError:
                return  # ENXIO: only a hole remains
            end = os.lseek(fd, start, os.SEEK_HOLE)
            index = start // BLOCK_SIZE
            while index * BLOCK_SIZE < end:
                f.seek(index * BLOCK_SIZE)
                data = f.read(BLOCK_SIZE)
                if data.count(0) != len(data):
                    yield Block(index, data.ljust(BLOCK_SIZE, b"\0"))
                index += 1
            offset = index * BLOCK_SIZE


def _tag_filter(name: str, value: str) -> list[dict[str, Any]]:
    return [{"Name": f"tag:{name}", "Values": [value]}]


def _tags(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in sorted(tags.items())]


def wait_for(what: str, check: Callable[[], str], done: str, timeout: float, interval: float = 5) -> None:
    """Poll `check` until it returns `done`; a state ending in "error"/"failed" or the time limit fails."""
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        state = check()
        if state != last:
            log.info("%s: %s", what, state)
            last = state
        if state == done:
            return
        if state in ("error", "failed", "invalid", "deregistered"):
            raise PublishError(f"{what} ended in state {state!r}")
        if time.monotonic() > deadline:
            raise PublishError(f"{what} still {state!r} after {timeout:.0f}s (provider.publish_timeout)")
        time.sleep(interval)


def find_snapshot(ec2: Any, image_key: str) -> str | None:
    found = ec2.describe_snapshots(OwnerIds=["self"], Filters=_tag_filter(IMAGE_KEY_TAG, image_key))
    usable = [s for s in found["Snapshots"] if s["State"] in ("pending", "completed")]
    return str(usable[0]["SnapshotId"]) if usable else None


def upload_snapshot(
    connection: Connection,
    image: Path,
    image_key: str,
    description: str,
    tags: dict[str, str],
    timeout: float,
    say: Callable[[str], None],
    workers: int = 8,
) -> str:
    """The snapshot of `image` in the region: an existing one with the same content, or a new upload."""
    ec2 = connection.client("ec2")
    existing = find_snapshot(ec2, image_key)
    if existing:
        say(f"snapshot {existing} already holds this image")
    else:
        existing = _upload(connection, image, image_key, description, tags, timeout, say, workers)
    wait_for(
        f"snapshot {existing}",
        lambda: str(ec2.describe_snapshots(SnapshotIds=[existing])["Snapshots"][0]["State"]),
        "completed",
        timeout,
    )
    return existing


def _upload(
    connection: Connection,
    image: Path,
    image_key: str,
    description: str,
    tags: dict[str, str],
    timeout: float,
    say: Callable[[str], None],
    workers: int,
) -> str:
    ebs = connection.client("ebs")
    size = image.stat().st_size
    started = ebs.start_snapshot(
        VolumeSize=-(-size // GIB),
        Description=description,
        Tags=_tags({**tags, IMAGE_KEY_TAG: image_key}),
        # The same token within the API's idempotency window returns the same snapshot.
        ClientToken=image_key[:64],
        Timeout=max(10, int(timeout // 60)),
    )
    snapshot_id = str(started["SnapshotId"])
    say(f"uploading {image.name} ({size / GIB:.1f} GiB) to snapshot {snapshot_id}")

    def put(block: Block) -> int:
        ebs.put_snapshot_block(
            SnapshotId=snapshot_id,
            BlockIndex=block.index,
            BlockData=block.data,
            DataLength=BLOCK_SIZE,
            Checksum=block.checksum(),
            ChecksumAlgorithm="SHA256",
        )
        return len(block.data)

    sent = blocks = 0
    reported = 0
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            in_flight: deque[Future[int]] = deque()
            for block in data_blocks(image):
                # A bounded window: an image's data is never all in memory at once.
                if len(in_flight) >= 2 * workers:
                    sent += in_flight.popleft().result()
                    blocks += 1
                in_flight.append(pool.submit(put, block))
                if sent - reported >= size // 10:
                    say(f"uploaded {sent / GIB:.2f} GiB in {blocks} blocks")
                    reported = sent
            for future in in_flight:
                sent += future.result()
                blocks += 1
        ebs.complete_snapshot(SnapshotId=snapshot_id, ChangedBlocksCount=blocks)
    except botocore.exceptions.ClientError as exc:
        raise PublishError(f"uploading snapshot {snapshot_id} failed: {exc}") from exc
    say(f"uploaded {blocks} blocks ({sent / GIB:.2f} GiB of {size / GIB:.1f} GiB; the rest is empty)")
    return snapshot_id


@dataclass(frozen=True)
class AmiRequest:
    name: str
    description: str
    architecture: str  # Debian's: amd64, arm64
    boot_mode: str
    ena: bool
    sriov: bool
    tags: dict[str, str]

    def register_arguments(self, snapshot_id: str, publish_key: str) -> dict[str, Any]:
        arguments: dict[str, Any] = {
            "Name": self.name,
            "Description": self.description,
            "Architecture": ARCHITECTURES[self.architecture],
            "VirtualizationType": "hvm",
            "RootDeviceName": ROOT_DEVICE,
            "BlockDeviceMappings": [
                {
                    "DeviceName": ROOT_DEVICE,
                    "Ebs": {"SnapshotId": snapshot_id, "VolumeType": "gp3", "DeleteOnTermination": True},
                }
            ],
            "EnaSupport": self.ena,
            "BootMode": self.boot_mode,
            "ImdsSupport": "v2.0",
            "TagSpecifications": [
                {"ResourceType": "image", "Tags": _tags({**self.tags, PUBLISH_KEY_TAG: publish_key})}
            ],
        }
        if self.sriov:
            arguments["SriovNetSupport"] = "simple"
        return arguments


def register_ami(
    connection: Connection,
    request: AmiRequest,
    snapshot_id: str,
    publish_key: str,
    timeout: float,
    say: Callable[[str], None],
) -> str:
    """The AMI for this publish key: the one already registered, or a new one."""
    ec2 = connection.client("ec2")
    mine = ec2.describe_images(Owners=["self"], Filters=_tag_filter(PUBLISH_KEY_TAG, publish_key))["Images"]
    mine = [i for i in mine if i.get("State") not in ("deregistered", "failed")]
    if mine:
        image_id = str(mine[0]["ImageId"])
        say(f"AMI {image_id} ({mine[0].get('Name')}) is already registered for this build")
        return image_id
    same_name = ec2.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": [request.name]}])
    if same_name["Images"]:
        other = same_name["Images"][0]["ImageId"]
        raise PublishError(
            f"an AMI named {request.name!r} already exists in {connection.region} ({other}) and was "
            "not registered from this build; AMI names are unique per region: change the manifest's "
            "name (a date field such as {%Y}{%m}{%d}{%H}{%M} helps) or deregister it"
        )
    try:
        image_id = str(ec2.register_image(**request.register_arguments(snapshot_id, publish_key))["ImageId"])
    except botocore.exceptions.ClientError as exc:
        raise PublishError(f"registering AMI {request.name!r} failed: {exc}") from exc
    # Some EC2-compatible endpoints ignore TagSpecifications on RegisterImage: tag again (idempotent).
    ec2.create_tags(Resources=[image_id], Tags=_tags({**request.tags, PUBLISH_KEY_TAG: publish_key}))
    say(f"registered AMI {image_id} ({request.name})")
    wait_for(
        f"AMI {image_id}",
        lambda: str(ec2.describe_images(ImageIds=[image_id])["Images"][0]["State"]),
        "available",
        timeout,
    )
    return image_id
