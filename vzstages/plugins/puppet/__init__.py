"""puppet: Debian's puppet-agent (7 on bookworm, 8 on trixie), modules installed from local
tarballs (no Forge is reached at build time), and a local manifest applied with `puppet apply`
inside the image. bootstrap-vz added the Puppet Labs apt repository, which is gone: a manifest
that still names it gets a clear error."""

from __future__ import annotations

from ...manifest import Manifest, Problem, input_file_problems
from ...model.taskset import TaskSet
from .tasks import ApplyPuppet, InstallPuppet


def validate(manifest: Manifest) -> list[Problem]:
    problems: list[Problem] = []
    settings = manifest.get("plugins.puppet") or {}
    base = ("plugins", "puppet")
    if settings.get("manifest"):
        problems += input_file_problems(manifest, (*base, "manifest"), "puppet manifest", max_bytes=16 << 20)
    if settings.get("assets"):
        problems += input_file_problems(manifest, (*base, "assets"), "assets folder", folder_only=True)
    for index, _ in enumerate(settings.get("install_modules", [])):
        problems += input_file_problems(manifest, (*base, "install_modules", index), "module tarball")
    for name, entries in (manifest.get("packages.sources") or {}).items():
        if any("puppetlabs" in entry or "puppet.com" in entry for entry in entries):
            problems.append(
                Problem(
                    ("packages", "sources", name),
                    "the Puppet Labs apt repository bootstrap-vz used is gone; the puppet plugin installs "
                    "Debian's puppet-agent (7.x on bookworm, 8.x on trixie): remove this source",
                )
            )
    return problems


def resolve_tasks(taskset: TaskSet, manifest: Manifest) -> None:
    taskset.add(InstallPuppet, ApplyPuppet)
