"""docker_daemon: Docker from Debian (docker.io, with systemd and cgroup v2: no kernel command-line
flags needed), `docker_opts` given to dockerd through a systemd drop-in. No registry is reached at
build time: `pull_images` names local image tarballs, which the image loads at its first boot."""

from __future__ import annotations

import shlex

from ...manifest import Manifest, Problem, input_file_problems
from ...model.taskset import TaskSet
from .tasks import ConfigureDocker, InstallDocker


def validate(manifest: Manifest) -> list[Problem]:
    problems: list[Problem] = []
    options = manifest.get("plugins.docker_daemon.docker_opts")
    if options:
        try:
            shlex.split(options)
        except ValueError as exc:  # an unclosed quote: dockerd would never start
            problems.append(
                Problem(("plugins", "docker_daemon", "docker_opts"), f"cannot be split into options: {exc}")
            )
    if manifest.has("plugins.docker_daemon.version"):
        manifest.warnings.append(
            f"{manifest.doc.where(('plugins', 'docker_daemon', 'version'))}: accepted and not used: "
            "the image gets Debian's docker.io, which follows the release"
        )
    for index, _ in enumerate(manifest.get("plugins.docker_daemon.pull_images") or []):
        where = ("plugins", "docker_daemon", "pull_images", index)
        problems += input_file_problems(manifest, where, "image tarball")
    return problems


def resolve_tasks(taskset: TaskSet, manifest: Manifest) -> None:
    taskset.add(InstallDocker, ConfigureDocker)
