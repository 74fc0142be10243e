"""Providers and plugins: one folder each, found by name, as in bootstrap-vz.

A component is a package `vzstages.providers.<name>` or `vzstages.plugins.<name>` with
- `schema.yml` beside its `__init__.py`: a fragment of the manifest schema (optional),
- `resolve_tasks(taskset, manifest)`: adds (or removes) the tasks it needs,
- `validate(manifest) -> list[Problem]`: semantic checks beyond the schema (optional),
- `overlay_folder(host, runs, stage, manifest)` (optional): a context manager giving the folder
  a disk stage writes its overlay in (tmpfs_workspace: memory); the runner copies the finished
  checkpoint into the cache. At most one component of a manifest may have one.
- `DEFAULT_PLUGINS` (a provider's, optional): plugins its images get unless the manifest sets
  them itself, as if the manifest listed them with no settings (EC2 grows its root).
Adding one is adding a folder; nothing else needs to change.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from .host import Host
    from .manifest import Manifest, Problem
    from .model.taskset import TaskSet

    OverlayFolder = Callable[[Host, Path, str, Manifest], AbstractContextManager[Path]]

PACKAGE_DIR = Path(__file__).parent


@dataclass(frozen=True)
class Component:
    kind: str  # "providers" or "plugins"
    name: str
    module: ModuleType

    @property
    def folder(self) -> Path:
        return Path(self.module.__file__ or "").parent

    def schema(self) -> dict[str, Any]:
        path = self.folder / "schema.yml"
        return yaml.safe_load(path.read_text()) if path.exists() else {}

    def resolve_tasks(self, taskset: TaskSet, manifest: Manifest) -> None:
        resolve: Callable[[TaskSet, Manifest], None] = self.module.resolve_tasks
        resolve(taskset, manifest)

    def validate(self, manifest: Manifest) -> list[Problem]:
        check: Callable[[Manifest], list[Problem]] | None = getattr(self.module, "validate", None)
        return check(manifest) if check else []

    @property
    def default_plugins(self) -> tuple[str, ...]:
        return tuple(getattr(self.module, "DEFAULT_PLUGINS", ()))

    @property
    def overlay_folder(self) -> OverlayFolder | None:
        return getattr(self.module, "overlay_folder", None)


def of_manifest(manifest: Manifest) -> list[Component]:
    """The manifest's provider, then its plugins (validated when it loaded)."""
    found = [provider(manifest.provider), *(plugin(name) for name in manifest.plugins)]
    return [c for c in found if c is not None]


def overlay_folder(manifest: Manifest) -> OverlayFolder | None:
    return next((c.overlay_folder for c in of_manifest(manifest) if c.overlay_folder), None)


@cache
def available(kind: str) -> tuple[str, ...]:
    return tuple(sorted(m.name for m in pkgutil.iter_modules([str(PACKAGE_DIR / kind)]) if m.ispkg))


def load(kind: str, name: str) -> Component | None:
    if name not in available(kind):
        return None
    return Component(kind, name, importlib.import_module(f"vzstages.{kind}.{name}"))


def provider(name: str) -> Component | None:
    return load("providers", name)


def plugin(name: str) -> Component | None:
    return load("plugins", name)
