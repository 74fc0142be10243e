"""The cleanup stage: nothing of the build, and nothing machine-specific, stays in the image."""

from __future__ import annotations

from ..model.info import BuildInfo
from ..model.phases import Phase
from ..model.task import Task
from . import reproducible
from .bootstrap import DPKG_UNSAFE_IO, POLICY_RC_D


class CleanApt(Task):
    description = "Removing apt's caches and package lists"
    phase = Phase.SYSTEM_CLEANING

    @classmethod
    def run(cls, info: BuildInfo) -> None:
        info.chroot(["apt-get", "clean"])
        lists = info.target / "var/lib/apt/lists"
        for entry in lists.glob("*"):
            if entry.is_file() and entry.name != "lock":
                entry.unlink()
        for leftover in (info.target / "var/cache/debconf").glob("*-old"):
            leftover.unlink()


class RemoveBuildSettings(Task):
    description = "Removing the build's policy-rc.d and dpkg settings"
    phase = Phase.SYSTEM_CLEANING

    @classmethod
    def run(cls, info: BuildInfo) -> None:
        for path in (POLICY_RC_D, DPKG_UNSAFE_IO):
            (info.target / path).unlink(missing_ok=True)


class MakeGeneric(Task):
    description = "Removing SSH host keys and the machine id"
    phase = Phase.SYSTEM_CLEANING

    @classmethod
    def run(cls, info: BuildInfo) -> None:
        # Every disk stage ends with this too (reproducible.settle); here it is said in the plan.
        reproducible.forget_machine(info.target)


class ClearLogsAndTemp(Task):
    description = "Clearing logs and temporary files"
    phase = Phase.SYSTEM_CLEANING
    predecessors = (CleanApt,)

    @classmethod
    def run(cls, info: BuildInfo) -> None:
        reproducible.empty_logs(info.target)
        for tmp in ("tmp", "var/tmp"):
            folder = info.target / tmp
            for entry in folder.iterdir() if folder.is_dir() else []:
                entry.rmtree()
        (info.target / "root/.bash_history").unlink(missing_ok=True)
