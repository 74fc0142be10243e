"""Copies of the registered AMI in more regions (switched on by the ec2_publish plugin): each
copy is tagged with the publish key, so a rerun finds it instead of copying again."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from ...model.info import BuildInfo
from ...model.phases import Phase
from ...model.task import Task
from . import aws
from .publish import DEFAULT_TIMEOUT, READS, RegisterImage, add_to_result, connection


def find_copy(ec2: Any, publish_key: str) -> str | None:
    found = ec2.describe_images(
        Owners=["self"], Filters=[{"Name": f"tag:{aws.PUBLISH_KEY_TAG}", "Values": [publish_key]}]
    )["Images"]
    usable = [i for i in found if i.get("State") not in ("deregistered", "failed")]
    return str(usable[0]["ImageId"]) if usable else None


def image_state(ec2: Any, image_id: str) -> Callable[[], str]:
    return lambda: str(ec2.describe_images(ImageIds=[image_id])["Images"][0]["State"])


def make_public(ec2: Any, image_id: str) -> None:
    ec2.modify_image_attribute(ImageId=image_id, LaunchPermission={"Add": [{"Group": "all"}]})
    image = ec2.describe_images(ImageIds=[image_id])["Images"][0]
    for mapping in image.get("BlockDeviceMappings", []):
        snapshot = mapping.get("Ebs", {}).get("SnapshotId")
        if snapshot:
            ec2.modify_snapshot_attribute(
                SnapshotId=snapshot,
                Attribute="createVolumePermission",
                OperationType="add",
                GroupNames=["all"],
            )


class PublishToRegions(Task):
    description = "Copying the AMI to more regions"
    phase = Phase.IMAGE_PUBLISHING
    predecessors = (RegisterImage,)
    reads = (*READS, "name", "plugins.ec2_publish")

    @classmethod
    def run(cls, info: BuildInfo) -> None:
        settings = info.manifest.get("plugins.ec2_publish") or {}
        home = connection(info.manifest)
        timeout = info.manifest.get("provider.publish_timeout", DEFAULT_TIMEOUT)
        amis = {home.region: info.facts["image_id"]}
        source = home.client("ec2").describe_images(ImageIds=[amis[home.region]])["Images"][0]
        for region in settings.get("regions", []):
            if region == home.region:
                continue
            ec2 = home.in_region(region).client("ec2")
            copy = find_copy(ec2, info.key)
            if copy:
                info.say(f"{region}: {copy} is already a copy of this build")
            else:
                copy = str(
                    ec2.copy_image(
                        SourceRegion=home.region,
                        SourceImageId=amis[home.region],
                        Name=source["Name"],
                        Description=source.get("Description", ""),
                    )["ImageId"]
                )
                ec2.create_tags(Resources=[copy], Tags=[{"Key": aws.PUBLISH_KEY_TAG, "Value": info.key}])
                info.say(f"{region}: copying to {copy}")
            aws.wait_for(f"AMI {copy} in {region}", image_state(ec2, copy), "available", timeout)
            amis[region] = copy
        if settings.get("public"):
            for region, image_id in amis.items():
                ec2 = home.in_region(region).client("ec2")
                make_public(ec2, image_id)
            info.say(f"made public in {', '.join(sorted(amis))}")
        info.facts["amis"] = amis
        add_to_result(info, amis=amis)
        url = settings.get("manifest_url")
        if url:
            bucket, _, key = url.removeprefix("s3://").partition("/")
            home.client("s3").put_object(
                Bucket=bucket, Key=key, Body=json.dumps(amis, sort_keys=True).encode()
            )
            info.say(f"wrote the region map to {url}")
