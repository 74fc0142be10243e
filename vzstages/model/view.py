"""The manifest as one task sees it: only the keys the task declared it reads."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UndeclaredRead
from ..manifest.keypath import covers
from ..manifest.template import fields

if TYPE_CHECKING:
    from ..manifest import Manifest


class ManifestView:
    def __init__(self, manifest: Manifest, task_name: str, reads: Sequence[str]):
        self._manifest = manifest
        self._task = task_name
        # A template inside a declared value may name other keys: rendering it reads them, and
        # the stage key holds them too (compiler/keys.py).
        referenced, _ = manifest.referenced(reads)
        self._allowed = tuple(manifest.keypath(r) for r in (*reads, *referenced))

    def _check(self, dotted: str) -> None:
        path = self._manifest.keypath(dotted)
        if not any(covers(d, path) for d in self._allowed):
            raise UndeclaredRead(
                f"task {self._task} read manifest key '{dotted}' without declaring it in `reads`; "
                "undeclared inputs would be missing from its stage key"
            )

    def get(self, dotted: str, default: Any = None) -> Any:
        self._check(dotted)
        return self._manifest.get(dotted, default)

    def has(self, dotted: str) -> bool:
        self._check(dotted)
        return self._manifest.has(dotted)

    def render(self, template: str) -> str:
        """Substitute {system.release}-style fields; each field is a read that must be declared."""
        for field in fields(template):
            self._check(field)
        return self._manifest.render(template)

    @property
    def firmware(self) -> str:
        """bios or uefi, from system.firmware or its default for the architecture."""
        self._check("system.firmware")
        self._check("system.architecture")
        return self._manifest.firmware

    def relative_path(self, value: str) -> Path:
        return self._manifest.relative_path(value)

    @property
    def workspace(self) -> Path:
        """Where the build writes images and logs: never an input (a task's input folder that
        holds it leaves it out), and no part of any stage's content."""
        return self._manifest.workspace
