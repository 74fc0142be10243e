"""The gce provider's tasks."""

from __future__ import annotations

from typing import ClassVar

from ...atomic import atomic_output
from ...common import bootable
from ...common.apt import AptInstall
from ...common.image import convert
from ...model.info import BuildInfo
from ...model.phases import Phase
from ...model.task import Task
from ...model.view import ManifestView
from ...volume.runs import run_folder


class WriteInitramfsModules(bootable.WriteInitramfsModules):
    @classmethod
    def modules(cls, info: BuildInfo) -> list[str]:
        return [*bootable.VIRTIO_DISKS, "virtio_net", "gve", "nvme"]


class InstallKernel(bootable.InstallKernel):
    packages: ClassVar[dict[str, str]] = {
        "amd64": "linux-image-cloud-amd64",
        "arm64": "linux-image-cloud-arm64",
    }


class InstallGuestAgent(AptInstall):
    description = "Installing the Google guest agent"
    packages = ("google-guest-agent",)


class PackDiskTarball(Task):
    description = "Packing disk.raw into the GCE image tarball"
    phase = Phase.IMAGE_REGISTRATION

    @classmethod
    def outputs(cls, manifest: ManifestView, image_name: str) -> list[str]:
        return [f"{image_name}.tar.gz"]

    @classmethod
    def run(cls, info: BuildInfo) -> None:
        target = info.workspace / cls.outputs(info.manifest, info.image_name)[0]
        with atomic_output(target) as partial, run_folder(info.runs, "gce-pack") as folder:
            convert(info, "raw", folder / "disk.raw")
            # GCE reads GNU tar with sparse files: a 10 GiB disk.raw packs to what it holds.
            info.host.run(
                [
                    "tar",
                    "--create",
                    "--sparse",
                    "--format=oldgnu",
                    # The same key, the same bytes: no clock (tar's, gzip's), no owner's name.
                    f"--mtime=@{info.epoch}",
                    "--owner=0",
                    "--group=0",
                    "--numeric-owner",
                    "--use-compress-program=gzip -n",
                    "--file",
                    str(partial),
                    "--directory",
                    str(folder),
                    "disk.raw",
                ]
            )
        info.facts["image"] = str(target)
