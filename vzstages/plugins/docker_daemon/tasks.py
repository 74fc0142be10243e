from __future__ import annotations

import shlex
from pathlib import Path

from ...common.apt import AptInstall
from ...model.info import BuildInfo
from ...model.phases import Phase
from ...model.task import Task
from ...model.view import ManifestView

IMAGES = "var/lib/vzstages/docker-images"
LOAD_UNIT = f"""\
[Unit]
Description=Load the Docker images built into this machine (vzstages docker_daemon)
After=docker.service
Requires=docker.service
ConditionDirectoryNotEmpty=/{IMAGES}

[Service]
Type=oneshot
ExecStart=/bin/sh -c 'for image in /{IMAGES}/*.tar; do docker load -i "$image" && rm -f "$image"; done'

[Install]
WantedBy=multi-user.target
"""


class InstallDocker(AptInstall):
    description = "Installing Docker (docker.io)"
    packages = ("docker.io",)


class ConfigureDocker(Task):
    description = "Configuring dockerd and the images to load at first boot"
    phase = Phase.SYSTEM_MODIFICATION
    reads = ("plugins.docker_daemon.docker_opts", "plugins.docker_daemon.pull_images")

    @classmethod
    def input_files(cls, manifest: ManifestView) -> dict[str, Path]:
        return {i: manifest.relative_path(i) for i in manifest.get("plugins.docker_daemon.pull_images") or []}

    @classmethod
    def run(cls, info: BuildInfo) -> None:
        opts = info.manifest.get("plugins.docker_daemon.docker_opts")
        if opts:
            dropin = info.target / "etc/systemd/system/docker.service.d"
            dropin.mkdir(parents=True, exist_ok=True)
            args = " ".join(shlex.quote(a) for a in shlex.split(opts))
            (dropin / "vzstages.conf").write_text(
                "[Service]\nExecStart=\n"
                f"ExecStart=/usr/sbin/dockerd -H fd:// --containerd=/run/containerd/containerd.sock {args}\n"
            )
        images = info.manifest.get("plugins.docker_daemon.pull_images") or []
        if images:
            folder = info.target / IMAGES
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            for index, image in enumerate(images):
                (folder / f"{index:03d}.tar").copy_from(info.manifest.relative_path(image), 0o600)
            (info.target / "etc/systemd/system/vzstages-docker-load.service").write_text(LOAD_UNIT)
            info.chroot(["systemctl", "enable", "vzstages-docker-load.service"])
        info.chroot(["systemctl", "enable", "docker.service"])
