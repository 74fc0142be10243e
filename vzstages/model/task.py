"""The Task: a small class with a phase, ordering edges, declared inputs and a `run`.

As in bootstrap-vz, tasks are classes used as values (never instantiated); a provider or plugin
adds them to a TaskSet. Unlike bootstrap-vz, each declares what it reads, because that is what
its stage's cache key is made of.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from .phases import Phase

if TYPE_CHECKING:
    from .info import BuildInfo
    from .view import ManifestView


@dataclass(frozen=True)
class InputTree:
    """A host folder a task reads from as a whole (an Ansible playbook's folder): what is below
    `exclude` is left out (the build's own workspace may sit inside it), and sockets, FIFOs and
    devices count by name only, never read."""

    path: Path
    exclude: tuple[Path, ...] = ()


class Task:
    description: ClassVar[str] = ""
    phase: ClassVar[Phase]
    predecessors: ClassVar[Sequence[type[Task]]] = ()
    successors: ClassVar[Sequence[type[Task]]] = ()
    # Dotted manifest keys this task reads ("system.hostname", "plugins.file_copy").
    reads: ClassVar[Sequence[str]] = ()
    # Files beside the task's module (templates, scripts) whose content is part of its code.
    assets: ClassVar[Sequence[str]] = ()
    # The suites the task downloads from, as suffixes of the release ("" for the release itself,
    # "-updates", "-security"): its stage key then includes their state (cache/archive_state.py).
    archive_suites: ClassVar[Sequence[str]] = ()
    # Tasks of one batch kind that follow each other in a stage run as one (run_batch): packages
    # that several tasks install are installed in one apt run. The order is the graph's.
    batch: ClassVar[str | None] = None
    # Debian packages of the build host whose programs shape the bytes the task writes (mkfs,
    # sfdisk, mmdebstrap): their versions enter the stage key, so two hosts with other tools get
    # other keys rather than one key with other bytes.
    host_packages: ClassVar[Sequence[str]] = ()

    @classmethod
    def name(cls) -> str:
        return f"{cls.__module__.removeprefix('vzstages.')}.{cls.__qualname__}"

    @classmethod
    def input_files(cls, manifest: ManifestView) -> Mapping[str, Path | InputTree]:
        """Host files the task brings into the image, by the name the manifest gives them."""
        return {}

    @classmethod
    def outputs(cls, manifest: ManifestView, image_name: str) -> list[str]:
        """Files the task writes into the workspace (image and publish stages)."""
        return []

    @classmethod
    def preflight(cls, manifest: ManifestView) -> None:
        """Check what the task needs from outside the manifest (credentials, a service) before
        any stage runs; raise a VzError that says what is missing."""

    @classmethod
    def run(cls, info: BuildInfo) -> None:
        raise NotImplementedError(cls.name())

    @classmethod
    def run_batch(cls, runs: Sequence[tuple[type[Task], BuildInfo]]) -> None:
        """Run consecutive tasks of this class's `batch` kind together; each with its own info."""
        for task, info in runs:
            task.run(info)

    @classmethod
    def rollback(cls, info: BuildInfo) -> None:
        """The counter task: undo host-side effects if the stage fails after this task ran.

        Changes inside the image need no undoing: a failed stage's overlay is thrown away.
        """

    @classmethod
    def asset_path(cls, name: str) -> Path:
        import sys

        module_file = sys.modules[cls.__module__].__file__
        assert module_file is not None
        return Path(module_file).parent / name
