"""puppet: Debian's puppet-agent (7 on bookworm, 8 on trixie), modules installed from local
tarballs or, as bootstrap-vz did, from the Forge by [name, version] (`puppet module install`, from
`forge` or puppet's own setting), and a local manifest applied with `puppet apply` inside the
image. bootstrap-vz added the Puppet Labs apt repository, which is gone: a manifest
that still names it gets a clear error."""

from __future__ import annotations

import re

from ...manifest import Manifest, Problem, input_file_problems
from ...manifest.load import KeyPath
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
    for index, module in enumerate(settings.get("install_modules", [])):
        where = (*base, "install_modules", index)
        if isinstance(module, str):
            problems += input_file_problems(manifest, where, "module tarball")
        else:
            problems += _forge_module_problems(manifest, where, module)
    forge = settings.get("forge")
    if forge is not None and not FORGE_URL.fullmatch(forge):
        problems.append(Problem((*base, "forge"), f"{forge!r} is not an http(s) URL"))
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


# The Forge's names: author-module (or author/module), lower case; versions are semantic.
MODULE_NAME = re.compile(r"[a-z0-9]+[-/][a-z][a-z0-9_]*", re.ASCII)
VERSION = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?", re.ASCII)
FORGE_URL = re.compile(r"https?://[^\s/]+(/\S*)?", re.ASCII)


def _forge_module_problems(manifest: Manifest, where: KeyPath, module: list[str]) -> list[Problem]:
    name = module[0]
    if not MODULE_NAME.fullmatch(name):
        return [Problem(where, f"{name!r} is not a Forge module name (author-module)")]
    if len(module) == 1:
        manifest.warnings.append(
            f"{manifest.doc.where(where)}: {name} without a version installs whatever the Forge serves "
            "when the stage runs, and its key cannot follow it: give [name, version]"
        )
    elif not VERSION.fullmatch(module[1]):
        return [Problem(where, f"{module[1]!r} is not a module version (such as 4.13.1)")]
    return []


def resolve_tasks(taskset: TaskSet, manifest: Manifest) -> None:
    taskset.add(InstallPuppet, ApplyPuppet)
