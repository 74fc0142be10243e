"""Load and validate a manifest: YAML/JSON, layered schema, semantic checks, all errors at once.

Validation needs neither root nor the network.
"""

from __future__ import annotations

import re
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .. import components
from ..errors import ManifestError
from ..volume.layout import LayoutError
from . import releases
from .layers import base_schema, merge, schema_problems, secret_paths, template_paths
from .load import KeyPath, load_document
from .model import Manifest
from .template import TemplateError

__all__ = ["Manifest", "Problem", "input_file_problems", "load_manifest"]


@dataclass(frozen=True)
class Problem:
    """A semantic problem: the key path it is about and what is wrong."""

    keypath: KeyPath
    message: str


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
            _add_default_plugins(data, provider.default_plugins)
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


def _add_default_plugins(data: dict[str, Any], names: tuple[str, ...]) -> None:
    if names and not isinstance(data.get("plugins", {}), dict):
        return  # the schema reports it
    for name in names:
        data.setdefault("plugins", {}).setdefault(name, {})


def _at(data: Any, where: KeyPath) -> Any:
    for part in where:
        data = data[part]
    return data


# What a name may hold: it names files in the workspace, an AMI, a docker tag.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+@:-]*", re.ASCII)
MAX_NAME = 128


def _base_checks(manifest: Manifest) -> list[Problem]:
    """What the schema cannot say: rules across keys, each in a check of its own."""
    return [
        *_template_checks(manifest),
        *_release_checks(manifest),
        *_boot_checks(manifest),
        *_volume_checks(manifest),
        *_input_file_checks(manifest),
    ]


def _template_checks(manifest: Manifest) -> list[Problem]:
    problems: list[Problem] = []
    for where in template_paths(manifest.schema, manifest.data):
        template = _at(manifest.data, where)
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
    return problems


def _release_checks(manifest: Manifest) -> list[Problem]:
    release_name = manifest.data["system"]["release"]
    release = releases.lookup(release_name)
    if release is None:
        known = ", ".join(sorted(releases.RELEASES) + sorted(releases.SUITE_ALIASES))
        return [Problem(("system", "release"), f"unknown release '{release_name}' (known: {known})")]
    if release.archived:
        manifest.warnings.append(
            f"{manifest.doc.where(('system', 'release'))}: {release_name} is end-of-life and only on archive "
            "mirrors; set bootstrapper.mirror to one, or the build stops when the mirror lacks it"
        )
    return []


def _boot_checks(manifest: Manifest) -> list[Problem]:
    """The bootloader against the partition table, the firmware and the architecture."""
    data = manifest.data
    bootloader, partitions = data["system"]["bootloader"], data["volume"]["partitions"]
    firmware, architecture = manifest.firmware, data["system"]["architecture"]
    problems: list[Problem] = []
    if bootloader == "pvgrub":
        # The whole fix at once: grub alone would then be refused for the unpartitioned volume.
        fix = (
            "use grub with a partition table (volume.partitions.type: gpt or msdos), or extlinux, "
            "which boots this unpartitioned volume"
            if partitions["type"] == "none"
            else "use grub"
        )
        problems.append(Problem(("system", "bootloader"), f"pvgrub (Xen paravirtual boot) is retired; {fix}"))
    if bootloader == "grub" and partitions["type"] == "none":
        problems.append(
            Problem(
                ("volume", "partitions", "type"),
                "grub cannot boot an unpartitioned volume (its core image needs the gap after a "
                "partition table); use msdos or gpt, or extlinux, which boots from the filesystem",
            )
        )
    firmware_rules = [
        (firmware == "bios" and architecture == "arm64", "arm64 machines boot only with UEFI; use uefi"),
        (
            firmware in ("uefi", "hybrid") and architecture == "i386",
            "UEFI images are built for amd64 and arm64; use bios",
        ),
        (
            firmware == "hybrid" and architecture != "amd64",
            "hybrid BIOS+UEFI images are amd64 (arm64 has only UEFI): use uefi",
        ),
    ]
    problems += [Problem(("system", "firmware"), message) for broken, message in firmware_rules if broken]
    if firmware in ("uefi", "hybrid") and bootloader not in ("grub", "none"):
        problems.append(
            Problem(("system", "bootloader"), f"UEFI images boot with grub, not {bootloader}; use grub")
        )
    if bootloader == "extlinux" and partitions.get("boot", partitions["root"])["filesystem"] == "xfs":
        problems.append(
            Problem(("volume", "partitions"), "extlinux cannot boot from xfs; use ext4 for /boot")
        )
    return problems


def _volume_checks(manifest: Manifest) -> list[Problem]:
    data = manifest.data
    volume, partitions = data["volume"], data["volume"]["partitions"]
    problems: list[Problem] = []
    if data.get("bootstrapper", {}).get("exclude_packages"):
        problems.append(
            Problem(
                ("bootstrapper", "exclude_packages"),
                "the base system is installed with mmdebstrap, which installs what its variant needs "
                "and no less; remove packages afterwards with the commands plugin "
                "(chroot {root} apt-get purge ...)",
            )
        )
    if volume.get("backing") != "lvm":
        for key in ("volumegroup", "logicalvolume"):
            if key in volume:
                problems.append(Problem(("volume", key), "only means something with backing: lvm"))
    elif data["system"]["bootloader"] == "extlinux" and "boot" not in partitions:
        problems.append(
            Problem(("volume", "partitions"), "extlinux cannot read LVM: give /boot a partition of its own")
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
    return problems


def _input_file_checks(manifest: Manifest) -> list[Problem]:
    data = manifest.data
    problems: list[Problem] = []
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
    manifest: Manifest,
    where: KeyPath,
    what: str,
    max_bytes: int | None = None,
    folder_ok: bool = False,
    folder_only: bool = False,
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
    if stat.S_ISDIR(st.st_mode) and (folder_ok or folder_only):
        return []
    if folder_only:
        return [Problem(where, f"{what} {path} is not a folder")]
    if not stat.S_ISREG(st.st_mode):
        kind = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        return [Problem(where, f"{what} {path} is {kind}")]
    if max_bytes is not None and st.st_size > max_bytes:
        return [Problem(where, f"{what} {path} is {st.st_size} bytes; at most {max_bytes} expected")]
    return []
