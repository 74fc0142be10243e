"""root_password: set root's password; the clear text never reaches logs, records or the cache."""

from __future__ import annotations

from ...manifest import Manifest, Problem
from ...model.taskset import TaskSet
from .tasks import SetRootPassword


def validate(manifest: Manifest) -> list[Problem]:
    settings = manifest.get("plugins.root_password") or {}
    if ("password" in settings) == ("password-crypted" in settings):
        return [Problem(("plugins", "root_password"), "set exactly one of password and password-crypted")]
    return []


def resolve_tasks(taskset: TaskSet, manifest: Manifest) -> None:
    taskset.add(SetRootPassword)
