"""Files and folders from the build host into the image (the file_copy plugin's task). It lives here
because the plugins that run what those files hold (ansible, puppet, commands) order themselves
after it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..model.info import BuildInfo
from ..model.phases import Phase
from ..model.task import Task
from ..model.view import ManifestView


def apply_attributes(info: BuildInfo, path: str, item: dict[str, Any], recursive: bool) -> None:
    # Inside the chroot, so user and group names are the image's, not the build host's.
    flag = ["-R"] if recursive else []
    if item.get("owner") or item.get("group"):
        info.chroot(["chown", *flag, f"{item.get('owner', '')}:{item.get('group', '')}".rstrip(":"), path])
    if item.get("permissions"):
        info.chroot(["chmod", *flag, item["permissions"], path])


class CopyFiles(Task):
    description = "Copying files into the image"
    phase = Phase.USER_MODIFICATION
    reads = ("plugins.file_copy",)

    @classmethod
    def input_files(cls, manifest: ManifestView) -> dict[str, Path]:
        files = manifest.get("plugins.file_copy.files") or []
        return {item["src"]: manifest.relative_path(item["src"]) for item in files}

    @classmethod
    def run(cls, info: BuildInfo) -> None:
        settings = info.manifest.get("plugins.file_copy")
        for item in settings.get("mkdirs", []):
            info.chroot(["mkdir", "-p", item["dir"]])
            apply_attributes(info, item["dir"], item, recursive=False)
        for item in settings["files"]:
            # The source itself is followed if it is a symlink (its key hashes what it points
            # to); symlinks below a copied folder are copied as symlinks. The copy resolves every
            # path inside the image, so a symlink already there never leads it onto the host.
            source = info.manifest.relative_path(item["src"]).resolve()
            destination = info.target / item["dst"]
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.copy_tree_from(source)
            apply_attributes(info, item["dst"], item, recursive=source.is_dir())
            info.say(f"{item['src']} -> {item['dst']}")
