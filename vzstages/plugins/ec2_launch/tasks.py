from __future__ import annotations

from pathlib import Path
from typing import Any

from ...atomic import write_atomic
from ...model.info import BuildInfo
from ...model.phases import Phase
from ...model.task import Task
from ...providers.ec2 import aws
from ...providers.ec2.publish import DEFAULT_TIMEOUT, READS, RegisterImage, add_to_result, connection
from ...providers.ec2.regions import PublishToRegions


def instance_state(ec2: Any, instance_id: str) -> str:
    reservations = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
    return str(reservations[0]["Instances"][0]["State"]["Name"])


class LaunchInstance(Task):
    description = "Launching an instance of the AMI"
    phase = Phase.IMAGE_PUBLISHING
    predecessors = (RegisterImage, PublishToRegions)
    reads = (*READS, "plugins.ec2_launch")

    @classmethod
    def run(cls, info: BuildInfo) -> None:
        settings = info.manifest.get("plugins.ec2_launch") or {}
        conn = connection(info.manifest)
        ec2 = conn.client("ec2")
        arm = info.manifest.get("system.architecture") == "arm64"
        arguments: dict[str, Any] = {
            "ImageId": info.facts["image_id"],
            "InstanceType": settings.get("instance_type", "t4g.micro" if arm else "t3.micro"),
            "MinCount": 1,
            "MaxCount": 1,
        }
        if settings.get("security_group_ids"):
            arguments["SecurityGroupIds"] = settings["security_group_ids"]
        if settings.get("subnet_id"):
            arguments["SubnetId"] = settings["subnet_id"]
        if settings.get("ssh_key"):
            arguments["KeyName"] = settings["ssh_key"]
        tags = {str(k): info.manifest.render(str(v)) for k, v in (settings.get("tags") or {}).items()}
        if tags:
            arguments["TagSpecifications"] = [
                {
                    "ResourceType": "instance",
                    "Tags": [{"Key": k, "Value": v} for k, v in sorted(tags.items())],
                }
            ]
        instance_id = str(ec2.run_instances(**arguments)["Instances"][0]["InstanceId"])
        info.say(f"launched {instance_id}")
        timeout = info.manifest.get("provider.publish_timeout", DEFAULT_TIMEOUT)
        aws.wait_for(f"instance {instance_id}", lambda: instance_state(ec2, instance_id), "running", timeout)
        instance = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
        address = instance.get("PublicIpAddress") or instance.get("PrivateIpAddress") or ""
        info.say(f"{instance_id} is running at {address}")
        if settings.get("print_public_ip"):
            write_atomic(Path(info.manifest.relative_path(settings["print_public_ip"])), address + "\n")
        if settings.get("deregister_ami"):
            ec2.deregister_image(ImageId=info.facts["image_id"])
            info.say(f"deregistered {info.facts['image_id']}")
        add_to_result(info, instance_id=instance_id, address=address)
