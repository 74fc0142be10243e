"""Load and validate a manifest: YAML/JSON, layered schema, semantic checks, all errors at once.

Validation needs neither root nor the network.
"""

from __future__ import annotations

import contextlib
import copy
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from .. import components
from ..errors import ManifestError
from ..volume.layout import Layout, LayoutError, Lvm, compute_layout
from . import keypath, releases
from .layers import base_schema, merge, schema_problems, secret_paths, template_paths
from .load import Document, KeyPath, load_document
from .template import FIELD, TemplateError, render

_MISSING = object()


@dataclass(frozen=True)
class Problem:
    """A semantic problem: the key path it is about and what is wrong."""

    keypath: KeyPath
    message: str


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


def load_manifest(path: str | Path, build_time: datetime | None = None) -> Manifest:
    """Load, validate and return a manifest, or raise ManifestError listing every problem."""
    doc = load_document(Path(path))
    data = doc.data
    for section in ("bootstrapper", "packages", "plugins"):
        if section in data and data[section] is None:
            data[section] = {}  # bootstrap-vz accepted an empty section (`packages:`)
    problems: list[str] = []

    schema = base_schema()
    provider = None
    provider_name = data.get("provider", {}).get("name") if isinstance(data.get("provider"), dict) else None
    if isinstance(provider_name, str):
        provider = components.provider(provider_name)
        if provider is None:
            known = ", ".join(components.available("providers"))
            problems.append(
                f"{doc.where(('provider', 'name'))}: unknown provider '{provider_name}' (available: {known})"
            )
            schema["properties"]["provider"]["additionalProperties"] = True  # its keys are unknowable
        else:
            schema = merge(schema, provider.schema())
    plugins = []
    for name in data.get("plugins") or {} if isinstance(data.get("plugins"), dict) else {}:
        plugin = components.plugin(name)
        if plugin is None:
            known = ", ".join(components.available("plugins"))
            problems.append(f"{doc.where(('plugins', name))}: unknown plugin '{name}' (available: {known})")
        else:
            plugins.append(plugin)
            schema = merge(schema, plugin.schema())
    # Unknown plugins are reported above; keep them out of the schema's "unknown key" report.
    for name in data.get("plugins") or {} if isinstance(data.get("plugins"), dict) else {}:
        schema["properties"]["plugins"]["properties"].setdefault(name, {})

    secrets = frozenset(secret_paths(schema, data))
    problems += schema_problems(doc, schema, secrets)
    if problems:
        raise ManifestError(str(path), problems)

    manifest = Manifest(
        path=Path(path),
        doc=doc,
        data=data,
        schema=schema,
        secrets=secrets,
        build_time=build_time or datetime.now(UTC),
    )
    semantic = _base_checks(manifest)
    for component in [c for c in (provider, *plugins) if c is not None]:
        semantic += component.validate(manifest)
    if semantic:
        messages = [manifest.redact(f"{doc.where(p.keypath)}: {p.message}") for p in semantic]
        raise ManifestError(str(path), messages)
    return manifest


def _at(data: Any, where: KeyPath) -> Any:
    for part in where:
        data = data[part]
    return data


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

# What a name may hold: it names files in the workspace, an AMI, a docker tag.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+@:-]*", re.ASCII)
MAX_NAME = 128


def _base_checks(manifest: Manifest) -> list[Problem]:
    problems: list[Problem] = []
    data = manifest.data
    for where in template_paths(manifest.schema, data):
        template = _at(data, where)
        try:
            rendered = manifest.render(template)
        except TemplateError as exc:
            problems.append(Problem(where, str(exc)))
            continue
        if where == ("name",) and (len(rendered) > MAX_NAME or not NAME.fullmatch(rendered)):
            problems.append(
                Problem(
                    where,
                    f"{rendered[:MAX_NAME]!r} is not a usable image name: at most {MAX_NAME} characters, "
                    "letters, digits and . _ + @ : - (it names files and cloud images)",
                )
            )

    release_name = data["system"]["release"]
    release = releases.lookup(release_name)
    if release is None:
        known = ", ".join(sorted(releases.RELEASES) + sorted(releases.SUITE_ALIASES))
        problems.append(Problem(("system", "release"), f"unknown release '{release_name}' (known: {known})"))
    elif release.archived:
        manifest.warnings.append(
            f"{manifest.doc.where(('system', 'release'))}: {release_name} is end-of-life and only on archive "
            "mirrors; set bootstrapper.mirror to one, or the build stops when the mirror lacks it"
        )

    bootloader = data["system"]["bootloader"]
    partitions = data["volume"]["partitions"]
    if bootloader == "pvgrub":
        problems.append(
            Problem(("system", "bootloader"), "pvgrub (Xen paravirtual boot) is retired; use grub")
        )
    if bootloader == "grub" and partitions["type"] == "none":
        problems.append(
            Problem(
                ("volume", "partitions", "type"),
                "grub cannot boot an unpartitioned volume (its core image needs the gap after a "
                "partition table); use msdos or gpt, or extlinux, which boots from the filesystem",
            )
        )
    firmware, architecture = manifest.firmware, data["system"]["architecture"]
    if firmware == "bios" and architecture == "arm64":
        problems.append(Problem(("system", "firmware"), "arm64 machines boot only with UEFI; use uefi"))
    if firmware in ("uefi", "hybrid") and architecture == "i386":
        problems.append(
            Problem(("system", "firmware"), "UEFI images are built for amd64 and arm64; use bios")
        )
    if firmware == "hybrid" and architecture != "amd64":
        problems.append(
            Problem(
                ("system", "firmware"), "hybrid BIOS+UEFI images are amd64 (arm64 has only UEFI): use uefi"
            )
        )
    if firmware in ("uefi", "hybrid") and bootloader not in ("grub", "none"):
        problems.append(
            Problem(("system", "bootloader"), f"UEFI images boot with grub, not {bootloader}; use grub")
        )
    if bootloader == "extlinux" and partitions.get("boot", partitions["root"])["filesystem"] == "xfs":
        problems.append(
            Problem(("volume", "partitions"), "extlinux cannot boot from xfs; use ext4 for /boot")
        )
    if data.get("bootstrapper", {}).get("exclude_packages"):
        problems.append(
            Problem(
                ("bootstrapper", "exclude_packages"),
                "the base system is installed with mmdebstrap, which installs what its variant needs "
                "and no less; remove packages afterwards with the commands plugin "
                "(chroot {root} apt-get purge ...)",
            )
        )
    volume = data["volume"]
    if volume.get("backing") != "lvm":
        for key in ("volumegroup", "logicalvolume"):
            if key in volume:
                problems.append(Problem(("volume", key), "only means something with backing: lvm"))
    elif bootloader == "extlinux" and "boot" not in partitions:
        problems.append(
            Problem(("volume", "partitions"), "extlinux cannot read LVM: give /boot a partition of its own")
        )
    elif "expand_root" in (data.get("plugins") or {}):
        problems.append(
            Problem(
                ("plugins", "expand_root"),
                "growing a root on LVM at boot is not supported; size the LV up front",
            )
        )
    for name, spec in partitions.items():
        if isinstance(spec, dict) and "format_command" in spec:
            problems.append(
                Problem(
                    ("volume", "partitions", name, "format_command"),
                    "custom format commands are not supported; vzstages formats partitions itself",
                )
            )
    try:
        manifest.layout  # noqa: B018  (computing it is the check)
    except LayoutError as exc:
        problems.append(Problem(exc.keypath, str(exc)))

    for index, item in enumerate(data.get("packages", {}).get("install", [])):
        if item.endswith(".deb"):
            problems += input_file_problems(manifest, ("packages", "install", index), "local package")
    for index, _ in enumerate(data.get("packages", {}).get("trusted-keys", [])):
        where = ("packages", "trusted-keys", index)
        problems += input_file_problems(manifest, where, "key file", max_bytes=MAX_KEY_BYTES)
    if data.get("bootstrapper", {}).get("keyring"):
        problems += input_file_problems(
            manifest, ("bootstrapper", "keyring"), "keyring", max_bytes=MAX_KEY_BYTES
        )
    return problems


MAX_KEY_BYTES = 16 << 20


def input_file_problems(
    manifest: Manifest, where: KeyPath, what: str, max_bytes: int | None = None, folder_ok: bool = False
) -> list[Problem]:
    """A host file a manifest key names (relative to the manifest): it must be a regular file
    (or a folder, where one is allowed) and not larger than `max_bytes`. A FIFO or a device
    would hang or never end when read; a huge key file is a mistake."""
    value = _at(manifest.data, where)
    path = manifest.relative_path(str(value))
    try:
        st = path.stat()
    except OSError as exc:
        return [Problem(where, f"{what} {path}: {exc.strerror.lower() if exc.strerror else exc}")]
    if stat.S_ISDIR(st.st_mode) and folder_ok:
        return []
    if not stat.S_ISREG(st.st_mode):
        kind = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        return [Problem(where, f"{what} {path} is {kind}")]
    if max_bytes is not None and st.st_size > max_bytes:
        return [Problem(where, f"{what} {path} is {st.st_size} bytes; at most {max_bytes} expected")]
    return []
