"""ec2_publish: after the AMI is registered, copy it to more regions (any region), wait for each
copy, make them public when asked (launch permission, and the snapshots' create-volume
permission), and write the region -> AMI map into NAME.ami.json (and the build's last line), and
to an S3 object if asked. Like the publish stage, a rerun finds its copies instead of copying again."""

from __future__ import annotations

from ...manifest import Manifest, Problem
from ...model.taskset import TaskSet
from ...providers.ec2.regions import PublishToRegions


def validate(manifest: Manifest) -> list[Problem]:
    if manifest.provider != "ec2":
        return [
            Problem(
                ("plugins", "ec2_publish"), f"publishes AMIs: the ec2 provider's, not {manifest.provider}'s"
            )
        ]
    return []


def resolve_tasks(taskset: TaskSet, manifest: Manifest) -> None:
    taskset.add(PublishToRegions)
