"""Build phases in bootstrap-vz's order, and the stages (cache units) that group them."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class Phase(IntEnum):
    VALIDATION = 0
    PREPARATION = 1
    VOLUME_CREATION = 2
    VOLUME_PREPARATION = 3
    VOLUME_MOUNTING = 4
    OS_INSTALLATION = 5
    PACKAGE_INSTALLATION = 6
    SYSTEM_MODIFICATION = 7
    USER_MODIFICATION = 8
    SYSTEM_CLEANING = 9
    VOLUME_UNMOUNTING = 10
    IMAGE_REGISTRATION = 11
    # Not in bootstrap-vz: uploading and registering with a cloud is its own cached stage here,
    # so a failed upload never repeats the conversion before it.
    IMAGE_PUBLISHING = 12
    CLEANING = 13

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class StageKind:
    name: str
    phases: tuple[Phase, ...]
    disk: bool  # runs with the image attached and mounted, ends in a qcow2 checkpoint
    doc: str


STAGE_KINDS: tuple[StageKind, ...] = (
    StageKind(
        "volume",
        (Phase.PREPARATION, Phase.VOLUME_CREATION, Phase.VOLUME_PREPARATION),
        True,
        "create the disk, partition and format it",
    ),
    StageKind("os", (Phase.OS_INSTALLATION,), True, "install the base system (mmdebstrap)"),
    StageKind(
        "packages", (Phase.PACKAGE_INSTALLATION,), True, "configure apt and install packages and kernel"
    ),
    StageKind("system", (Phase.SYSTEM_MODIFICATION,), True, "configure the system and the bootloader"),
    StageKind("user", (Phase.USER_MODIFICATION,), True, "users, files and commands"),
    StageKind("cleanup", (Phase.SYSTEM_CLEANING,), True, "make the image generic and small"),
    StageKind(
        "image", (Phase.IMAGE_REGISTRATION,), False, "convert the checkpoint chain to the output image"
    ),
    StageKind("publish", (Phase.IMAGE_PUBLISHING,), False, "upload and register the image"),
)

# Mounting and unmounting are the context of every disk stage, and validation happens when the
# manifest loads; tasks cannot be placed in these phases.
CONTEXT_PHASES = (Phase.VALIDATION, Phase.VOLUME_MOUNTING, Phase.VOLUME_UNMOUNTING, Phase.CLEANING)


def stage_kind_of(phase: Phase) -> StageKind | None:
    return next((k for k in STAGE_KINDS if phase in k.phases), None)
