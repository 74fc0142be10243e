"""What a running task receives: its manifest view, the mounted image, the build's facts."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..host import Host, Result
from ..volume.layout import Layout

if TYPE_CHECKING:
    from ..volume.disk import AttachedDisk, Tree
    from ..volume.inroot import ImagePath
    from .view import ManifestView

progress = logging.getLogger("vzstages.progress")


@dataclass
class BuildInfo:
    manifest: ManifestView
    stage: str
    key: str  # this stage's key; tasks derive deterministic ids (filesystem UUIDs) from it
    host: Host
    layout: Layout
    workspace: Path
    package_cache: Path  # host folder of downloaded .debs, shared by every build
    runs: Path  # where run folders (exports, mounts) live, so a dead run's leftovers are found
    image_name: str
    # Facts later stages need (kernel version, UUIDs): saved in the checkpoint record and
    # restored on a cache hit, so a stage behaves the same whether its parents ran or not.
    facts: dict[str, Any] = field(default_factory=dict)
    # The state of the suites the stage's key names ({suite: digest}): the stage installs from
    # exactly that state, or stops (common/archive.py, check_state).
    archive: dict[str, str] = field(default_factory=dict)
    # apt settings for this build only, never written into the image (a proxy and its password):
    # every apt run of the stage gets them (common/apt.py). Shared by the stage's tasks.
    apt_config: list[str] = field(default_factory=list)
    tree: Tree | None = None  # the mounted image, in disk stages
    disk: AttachedDisk | None = None  # the exported disk and its loop devices, in disk stages
    source_image: Path | None = None  # the top checkpoint, in the image and publish stages
    parent_stage: str | None = None  # the stage this one builds on (named when it fails)

    @property
    def target(self) -> ImagePath:
        """The mounted image's tree; every path resolves inside it (volume/inroot.py)."""
        if self.tree is None:
            raise RuntimeError(f"stage {self.stage} has no mounted image")
        return self.tree.image

    @property
    def image_root(self) -> Path:
        """The image root's mountpoint on the host, for commands that take it as an argument
        (debootstrap's target, `{root}` in the commands plugin)."""
        if self.tree is None:
            raise RuntimeError(f"stage {self.stage} has no mounted image")
        return self.tree.root

    def chroot(self, argv: list[str], **kwargs: Any) -> str:
        """Run a command inside the image (with /proc, /sys and /dev bound); return its output."""
        return self.chroot_result(argv, **kwargs).output

    def chroot_result(self, argv: list[str], **kwargs: Any) -> Result:
        """As `chroot`, for a caller that reads the exit status (check=False)."""
        if self.tree is None:
            raise RuntimeError(f"stage {self.stage} has no mounted image")
        env = {"SOURCE_DATE_EPOCH": str(self.epoch), **(kwargs.pop("env", None) or {})}
        return self.tree.chroot(argv, env=env, **kwargs)

    @property
    def epoch(self) -> int:
        """The stage's SOURCE_DATE_EPOCH, from its inputs (common/reproducible.py): the parent's,
        raised to the Release date of an archive state the stage's key names once it is checked.
        A fact, so the tasks' views of the stage share it and its record keeps it."""
        return int(self.facts.get("epoch", 0))

    def adopt_release_date(self, suite: str, release_file: bytes, date: int) -> None:
        """Raise the stage's epoch to a suite's Release date, if that InRelease is the very
        state the key names (an unknown state's date would give one key two epochs)."""
        from ..common.archive import suite_digest

        if self.archive.get(suite) == suite_digest(release_file):
            self.facts["epoch"] = max(self.epoch, date)

    def say(self, message: str) -> None:
        progress.info("  %s: %s", self.stage, message)
