"""The manifest as one task sees it: only the keys the task declared it reads."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UndeclaredRead
from ..manifest.template import _FIELD

if TYPE_CHECKING:
    from ..manifest import Manifest


def covers(declared: str, path: str) -> bool:
    """Declaring `plugins.admin_user` allows reading it and anything below it."""
    return path == declared or path.startswith(declared + ".")


class ManifestView:
    def __init__(self, manifest: Manifest, task_name: str, reads: Sequence[str]):
        self._manifest = manifest
        self._task = task_name
        self._reads = tuple(reads)

    def _check(self, path: str) -> None:
        if not any(covers(d, path) for d in self._reads):
            raise UndeclaredRead(
                f"task {self._task} read manifest key '{path}' without declaring it in `reads`; "
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
        for match in _FIELD.finditer(template):
            if not match.group(1).startswith("%"):
                self._check(match.group(1))
        return self._manifest.render(template)

    @property
    def firmware(self) -> str:
        """bios or uefi, from system.firmware or its default for the architecture."""
        self._check("system.firmware")
        self._check("system.architecture")
        return self._manifest.firmware

    def relative_path(self, value: str) -> Path:
        return self._manifest.relative_path(value)
