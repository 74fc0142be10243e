"""chef: refused. Chef left Debian after buster and its vendor's packages are not reachable from
the build; the error points to what does the same job."""

from __future__ import annotations

from ...manifest import Manifest, Problem
from ...model.taskset import TaskSet


def validate(manifest: Manifest) -> list[Problem]:
    return [
        Problem(
            ("plugins", "chef"),
            "Chef is not in Debian since buster, and its vendor's packages cannot be fetched at build "
            "time: configure the image with the ansible or puppet plugin (both from Debian), or with "
            "file_copy and commands",
        )
    ]


def resolve_tasks(taskset: TaskSet, manifest: Manifest) -> None:
    pass
