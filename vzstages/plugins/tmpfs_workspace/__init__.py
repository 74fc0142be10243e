"""tmpfs_workspace: each disk stage writes its overlay on a tmpfs of its own, and the finished
checkpoint is copied into the cache. The checkpoint's bytes do not depend on where it was built,
so the setting enters no stage key: it changes how fast a stage builds, not what it holds.
The plugin adds no task: it gives the stage runner the folder to build in (overlay_folder)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path

from ...host import Host
from ...manifest import Manifest, Problem
from ...model.taskset import TaskSet
from ...units import parse_size
from ...volume.runs import tmpfs_folder

# A size tmpfs takes and a stage can use: at least a base system's overlay, or a share of memory.
SIZE = re.compile(r"(?P<amount>[1-9][0-9]{0,15})(?P<unit>[KMGT]?)|(?P<percent>[1-9][0-9]?|100)%", re.ASCII)
MIN_SIZE = 256 << 20


def validate(manifest: Manifest) -> list[Problem]:
    size = manifest.get("plugins.tmpfs_workspace.size")
    if size is None:
        return []
    where = ("plugins", "tmpfs_workspace", "size")
    match = SIZE.fullmatch(size)
    if match is None:
        return [Problem(where, f"{size!r}: a size such as 8G or a share of memory such as 50% (1% to 100%)")]
    if match["amount"] and parse_size(match["amount"] + match["unit"]) < MIN_SIZE:
        return [Problem(where, f"{size!r} is too small for a stage's overlay (at least 256M)")]
    return []


def resolve_tasks(taskset: TaskSet, manifest: Manifest) -> None:
    pass


@contextlib.contextmanager
def overlay_folder(host: Host, runs: Path, stage: str, manifest: Manifest) -> Iterator[Path]:
    with tmpfs_folder(host, runs, stage, manifest.get("plugins.tmpfs_workspace.size")) as folder:
        yield folder
