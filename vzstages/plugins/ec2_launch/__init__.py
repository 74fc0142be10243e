"""ec2_launch: launch an instance of the AMI the publish stage registered, wait until it runs,
write its address where `print_public_ip` says (and into the build's result), and deregister the
AMI when asked. It is part of the publish stage, so `--no-publish` never launches anything."""

from __future__ import annotations

from ...manifest import Manifest, Problem
from ...model.taskset import TaskSet
from .tasks import LaunchInstance


def validate(manifest: Manifest) -> list[Problem]:
    if manifest.provider != "ec2":
        return [
            Problem(
                ("plugins", "ec2_launch"), f"launches AMIs: the ec2 provider's, not {manifest.provider}'s"
            )
        ]
    return []


def resolve_tasks(taskset: TaskSet, manifest: Manifest) -> None:
    taskset.add(LaunchInstance)
