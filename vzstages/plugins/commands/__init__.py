"""commands: run host commands against the mounted image, in order, each logged with its output.

The commands' text is part of the user stage's key; what they read on the host is not (list such
files with file_copy instead, so that a change to them is noticed).
"""

from __future__ import annotations

from ...manifest import Manifest
from ...model.taskset import TaskSet
from .tasks import RunCommands


def resolve_tasks(taskset: TaskSet, manifest: Manifest) -> None:
    taskset.add(RunCommands)
