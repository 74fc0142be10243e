"""The docker provider's tasks."""

from __future__ import annotations

import json

from ...atomic import atomic_output, write_atomic
from ...model.info import BuildInfo
from ...model.phases import Phase
from ...model.task import Task
from ...model.view import ManifestView
from ...volume.disk import opened_readonly
from ...volume.runs import run_folder


def file_stem(image_name: str) -> str:
    return image_name.replace("/", "_").replace(":", "_")


class ExportRootfs(Task):
    description = "Packing the root filesystem for docker import"
    phase = Phase.IMAGE_REGISTRATION
    # Labels may use any {provider.*} or {system.*} field.
    reads = ("provider", "system")

    @classmethod
    def outputs(cls, manifest: ManifestView, image_name: str) -> list[str]:
        return [f"{file_stem(image_name)}.tar", f"{file_stem(image_name)}.changes"]

    @classmethod
    def run(cls, info: BuildInfo) -> None:
        assert info.source_image is not None
        tar, changes = (info.workspace / name for name in cls.outputs(info.manifest, info.image_name))
        with (
            atomic_output(tar) as partial,
            run_folder(info.runs, "docker-export") as folder,
            opened_readonly(info.host, info.source_image, info.layout, folder) as tree,
        ):
            info.host.run(
                [
                    "tar",
                    "--create",
                    "--file",
                    str(partial),
                    "--numeric-owner",
                    # In name order, with no access or change times, and pax headers named
                    # without tar's pid: the same tree gives the same tarball.
                    "--sort=name",
                    "--format=posix",
                    "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime",
                    "--xattrs",
                    "--acls",
                    "--one-file-system",
                    "--directory",
                    str(tree.root),
                    ".",
                ]
            )
        lines = [
            f"LABEL {key}={json.dumps(info.manifest.render(value))}"
            for key, value in sorted((info.manifest.get("provider.labels") or {}).items())
        ]
        lines += info.manifest.get("provider.dockerfile") or []
        write_atomic(changes, "".join(f"{line}\n" for line in lines))
        info.facts["image"] = str(tar)
