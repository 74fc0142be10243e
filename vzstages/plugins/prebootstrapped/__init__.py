"""prebootstrapped: bootstrap-vz's way to reuse a bootstrapped volume. The stage cache does this
for every stage by itself, so the plugin is accepted and does nothing but say so."""

from __future__ import annotations

from ...manifest import Manifest, Problem
from ...model.taskset import TaskSet


def validate(manifest: Manifest) -> list[Problem]:
    manifest.warnings.append(
        f"{manifest.doc.where(('plugins', 'prebootstrapped'))}: not needed: vzstages reuses the os stage's "
        "checkpoint whenever its inputs are unchanged; the plugin's settings are ignored"
    )
    return []


def resolve_tasks(taskset: TaskSet, manifest: Manifest) -> None:
    pass
