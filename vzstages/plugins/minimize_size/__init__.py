"""minimize_size: keep documentation, translations and apt's leftovers out of the image, and
optionally compress the output. Free space never reaches an image: every disk stage trims its
filesystems, so `zerofree` has nothing left to do and is accepted as it is."""

from __future__ import annotations

from ...manifest import Manifest
from ...model.taskset import TaskSet
from .tasks import ConfigureAptForSmallImages, FilterDpkgPaths, ShrinkImage


def resolve_tasks(taskset: TaskSet, manifest: Manifest) -> None:
    settings = manifest.get("plugins.minimize_size") or {}
    if settings.get("dpkg"):
        taskset.add(FilterDpkgPaths)
    if settings.get("apt"):
        taskset.add(ConfigureAptForSmallImages)
    if settings.get("shrink"):
        taskset.add(ShrinkImage)
