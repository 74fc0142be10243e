"""The image stage: flatten the checkpoint chain into the provider's output format."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from ..atomic import atomic_output
from ..cache.record import sha256_while_flushing
from ..model.info import BuildInfo
from ..model.phases import Phase
from ..model.task import Task
from ..model.view import ManifestView
from . import image_ids

# Output format -> (qemu-img format, options, file extension).
# Formats whose clusters are placed where each write lands (raw, fixed VHD) may be written out of
# order; the others allocate in write order, so out-of-order writes would make the same checkpoint
# give different bytes from run to run.
IN_PLACE = {"raw", "vhd"}
FORMATS: dict[str, tuple[str, list[str], str]] = {
    "raw": ("raw", [], "raw"),
    "qcow2": ("qcow2", [], "qcow2"),
    "vmdk": ("vmdk", ["-o", "subformat=monolithicSparse"], "vmdk"),
    "vdi": ("vdi", [], "vdi"),
    "vhd": ("vpc", ["-o", "subformat=fixed,force_size=on"], "vhd"),
}


def output_format(manifest: ManifestView, default: str) -> str:
    """bootstrap-vz chose the output by volume.backing; anything else (ebs, folder) means the default."""
    backing = manifest.get("volume.backing")
    return backing if backing in FORMATS else default


def convert(info: BuildInfo, fmt: str, target: Path) -> None:
    assert info.source_image is not None
    qemu_fmt, options, _ = FORMATS[fmt]
    info.say(f"converting to {fmt}: {target}")
    with atomic_output(target) as tmp:
        # -p: progress lines for the console's status; -W: writes out of order, in parallel.
        parallel = ["-W"] if fmt in IN_PLACE else []
        convert = ["qemu-img", "convert", "-p", *parallel, "-f", "qcow2", "-O", qemu_fmt, *options]
        info.host.run([*convert, str(info.source_image), str(tmp)])
        image_ids.settle(fmt, tmp, target.name, info.key, info.epoch)
        sha256_while_flushing(tmp)  # the result file's digest, taken in the fsync's time
    info.facts["image"] = str(target)
    info.facts["image_key"] = info.key  # names the image's content, for publishing idempotently


class ConvertImage(Task):
    description = "Converting the image"
    host_packages = ("qemu-utils",)
    phase = Phase.IMAGE_REGISTRATION
    reads = ("volume.backing",)
    default_format: ClassVar[str] = "qcow2"  # providers override

    @classmethod
    def outputs(cls, manifest: ManifestView, image_name: str) -> list[str]:
        return [f"{image_name}.{FORMATS[output_format(manifest, cls.default_format)][2]}"]

    @classmethod
    def run(cls, info: BuildInfo) -> None:
        fmt = output_format(info.manifest, cls.default_format)
        convert(info, fmt, info.workspace / cls.outputs(info.manifest, info.image_name)[0])
