"""A validated manifest as the build reads it: values by dotted key, templates rendered, the
volume layout. Tasks see it through a ManifestView (model/view.py).

This module is part of every stage's runtime (its code enters every key); loading and
validating a manifest (`manifest/__init__.py`) is not: it decides whether a build may start,
never what a stage holds.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..volume.layout import Layout, Lvm, compute_layout
from . import keypath
from .template import FIELD, TemplateError, render

if TYPE_CHECKING:
    from .load import Document

_MISSING = object()


@dataclass
class Manifest:
    """A validated manifest. `data` is read-only by convention; tasks see it through a ManifestView."""

    path: Path
    doc: Document
    data: dict[str, Any]
    schema: dict[str, Any]  # the merged schema: base, provider, plugins
    secrets: frozenset[keypath.Path]  # values the schema marks `secret: true`
    build_time: datetime
    warnings: list[str] = field(default_factory=list)
    # Secret text found inside other values (debconf's password answers): redacted like secrets.
    secret_text: set[str] = field(default_factory=set)

    @property
    def provider(self) -> str:
        return str(self.data["provider"]["name"])

    @property
    def plugins(self) -> list[str]:
        return sorted(self.data.get("plugins") or {})

    def keypath(self, dotted: str) -> keypath.Path:
        """The path of a dotted key: `packages.apt.conf.d` is packages -> apt.conf.d."""
        return keypath.resolve(self.schema, dotted) or tuple(dotted.split("."))

    def get(self, dotted: str, default: Any = None) -> Any:
        try:
            return copy.deepcopy(keypath.lookup(self.data, self.keypath(dotted)))
        except KeyError:
            return default

    def has(self, dotted: str) -> bool:
        return self.get(dotted, _MISSING) is not _MISSING

    def is_secret(self, dotted: str) -> bool:
        path = self.keypath(dotted)
        return any(keypath.covers(s, path) or keypath.covers(path, s) for s in self.secrets)

    @cached_property
    def secret_values(self) -> frozenset[str]:
        """Every secret as text, for redacting messages and logs (those of at least
        MIN_REDACTED characters: replacing every "a" of a log would hide more than the secret)."""
        found = set(self.secret_text)
        for path in self.secrets:
            try:
                value = keypath.lookup(self.data, path)
            except KeyError:
                continue
            found |= {str(v) for v in _leaves(value)}
        return frozenset(v for v in found if len(v) >= MIN_REDACTED)

    def redact(self, text: str) -> str:
        return redact(text, self.secret_values)

    def referenced(self, reads: Sequence[str]) -> tuple[list[str], dict[str, str]]:
        """What the text under these keys refers to as templates: the manifest keys (which a
        task reading them may render, so they are its inputs too) and the date fields with
        their values for this build."""
        keys: list[str] = []
        dates: dict[str, str] = {}
        for dotted in reads:
            for text in (v for v in _leaves(self.get(dotted)) if isinstance(v, str)):
                for name in FIELD.findall(text):
                    if name.startswith("%"):
                        with contextlib.suppress(ValueError):
                            dates[name] = self.build_time.strftime(name)
                    elif self.has(name) and name not in keys:
                        keys.append(name)
        return keys, dates

    def render(self, template: str) -> str:
        """bootstrap-vz's substitutions: {system.release}, {provider.name}, {%Y} ..."""

        def lookup(field: str) -> Any:
            if self.is_secret(field):
                raise TemplateError(f"{{{field}}} is a secret and cannot be part of a name or text")
            return keypath.lookup(self.data, self.keypath(field))

        return render(template, lookup, self.build_time)

    @property
    def image_name(self) -> str:
        return self.render(self.data["name"])

    def relative_path(self, value: str) -> Path:
        """Paths in a manifest are relative to the manifest's own folder."""
        path = Path(value).expanduser()
        return path if path.is_absolute() else (self.path.parent / path).resolve()

    @property
    def workspace(self) -> Path:
        configured = self.get("bootstrapper.workspace")
        return self.relative_path(configured) if configured else Path.cwd() / "build"

    @property
    def firmware(self) -> str:
        """bios or uefi: arm64 machines have only UEFI."""
        system = self.data["system"]
        return str(system.get("firmware") or ("uefi" if system["architecture"] == "arm64" else "bios"))

    @property
    def layout(self) -> Layout:
        system = self.data["system"]
        volume = self.data["volume"]
        lvm = None
        if volume.get("backing") == "lvm":
            lvm = Lvm(volume.get("volumegroup", "vg0"), volume.get("logicalvolume", "root"))
        return compute_layout(volume["partitions"], system["bootloader"], self.firmware, lvm)


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in _leaves(v)]
    if isinstance(value, list):
        return [leaf for v in value for leaf in _leaves(v)]
    return [value]


def redact(text: str, secrets: frozenset[str]) -> str:
    """`text` with every secret value in it replaced by ***."""
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


MIN_REDACTED = 4
