"""What dpkg has installed in a stage's tree, taken when the stage ends and kept in its record.

The SBOMs and the provenance are written from these facts, never from the image: a build that
reuses or pulls every stage writes the same evidence without opening the image again.

For each installed package: name, version, architecture, source package and version, the SHA-256
of its .deb and the suite it came from. The digest and the suite come from the apt indexes in the
tree while a stage has them (the archive's own word, which apt checked the .deb against), else
from the parent stage's facts for the same package, else from the .deb in the shared package
cache. For each suite the tree has lists of: the SHA-256 of its InRelease and its Date (the
archive state the packages came from).

The tree is untrusted: every file is read through `ImagePath` with a size bound.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ..common.archive import release_date
from ..volume.inroot import ImagePath

STATUS = "var/lib/dpkg/status"
LISTS = "var/lib/apt/lists"
MAX_STATUS_BYTES = 64 << 20
MAX_INDEX_BYTES = 512 << 20
MAX_RELEASE_BYTES = 16 << 20
FIELDS = ("name", "version", "architecture", "source", "source_version", "sha256", "suite")

Entry = dict[str, str]


def paragraphs(text: str) -> Iterator[dict[str, str]]:
    """deb822 paragraphs as {field: first line of its value} (continuation lines dropped)."""
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line[:1] in (" ", "\t") or ":" not in line:
                continue
            name, _, value = line.partition(":")
            fields[name] = value.strip()
        if fields:
            yield fields


def installed(status: str) -> list[Entry]:
    """The packages dpkg's status file says are installed, sorted by name and architecture."""
    packages = []
    for fields in paragraphs(status):
        if not fields.get("Status", "").endswith(" installed") or "Package" not in fields:
            continue
        version = fields.get("Version", "")
        source, _, source_version = fields.get("Source", fields["Package"]).partition(" ")
        packages.append(
            {
                "name": fields["Package"],
                "version": version,
                "architecture": fields.get("Architecture", ""),
                "source": source,
                "source_version": source_version.strip("()") or version,
                "sha256": "",
                "suite": "",
            }
        )
    return sorted(packages, key=lambda p: (p["name"], p["architecture"]))


def identity(package: Entry) -> tuple[str, str, str]:
    return package["name"], package["version"], package["architecture"]


def suite_of(list_name: str) -> str:
    """`<mirror>_dists_bookworm-security_main_binary-amd64_Packages` -> bookworm-security."""
    return list_name.partition("_dists_")[2].partition("_")[0]


def index_digests(
    indexes: Iterable[tuple[str, bytes]], wanted: set[tuple[str, str, str]]
) -> dict[Any, Entry]:
    """{(name, version, arch): {sha256, suite}} from Packages indexes, for the wanted packages.
    An index is tens of MB: it is split as bytes and only the wanted paragraphs are decoded."""
    names = {name.encode() for name, _, _ in wanted}
    found: dict[Any, Entry] = {}
    for suite, data in indexes:
        for block in data.split(b"\n\n"):
            if not block.startswith(b"Package: ") or block[9 : block.find(b"\n")] not in names:
                continue
            fields = next(paragraphs(block.decode("utf-8", "replace")), {})
            ident = (fields.get("Package", ""), fields.get("Version", ""), fields.get("Architecture", ""))
            if ident in wanted and ident not in found and fields.get("SHA256"):
                found[ident] = {"sha256": fields["SHA256"], "suite": suite}
    return found


def deb_digest(debs: Path, package: Entry) -> str:
    """The SHA-256 of the package's .deb in the shared package cache, named as apt names it."""
    version = package["version"].replace(":", "%3a")
    path = debs / f"{package['name']}_{version}_{package['architecture']}.deb"
    # Not cache.record's file_sha256: this module runs in every stage, so its imports enter every
    # stage key, and the cache's record format must not.
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except OSError:
        return ""


def archive_facts(lists: ImagePath) -> dict[str, dict[str, Any]]:
    """{suite: {inrelease_sha256, date}} for each suite the tree has an InRelease of."""
    archive: dict[str, dict[str, Any]] = {}
    for path in lists.glob("*_InRelease"):
        data = read_bounded(path, MAX_RELEASE_BYTES)
        if data is None:
            continue
        date = release_date(data)
        archive[suite_of(path.name)] = {"inrelease_sha256": hashlib.sha256(data).hexdigest(), "date": date}
    return archive


def read_bounded(path: ImagePath, limit: int) -> bytes | None:
    """A file of the tree, or None if it is not a regular file or is larger than `limit`."""
    try:
        return path.read_bytes(limit)
    except OSError:
        return None


def take(tree: ImagePath, debs: Path, facts: dict[str, Any]) -> dict[str, Any]:
    """The inventory facts of the tree as the stage leaves it (`packages`, `archive`), over the
    parent's (`facts`); {} when the tree has no dpkg database (nothing installed yet)."""
    status = read_bounded(tree / STATUS, MAX_STATUS_BYTES)
    if status is None:
        return {}
    packages = installed(status.decode("utf-8", "replace"))
    # What the parent stage knew completely needs no index; the os stage has no lists, so its
    # packages get their suite in the stage after it.
    known = {identity(p): p for p in _entries(facts.get("packages")) if p["sha256"] and p["suite"]}
    new = {identity(p) for p in packages} - set(known)
    lists = tree / LISTS
    indexes = []
    for path in lists.glob("*_Packages") if new else []:  # the parent's facts know the rest
        data = read_bounded(path, MAX_INDEX_BYTES)
        if data is not None:
            indexes.append((suite_of(path.name), data))
    from_index = index_digests(sorted(indexes), new)
    for package in packages:
        ident = identity(package)
        source = known.get(ident) or from_index.get(ident) or {}
        package["sha256"] = source.get("sha256", "") or deb_digest(debs, package)
        package["suite"] = source.get("suite", "")
    archive = dict(facts.get("archive") or {}) if isinstance(facts.get("archive"), dict) else {}
    archive.update(archive_facts(lists))
    return {"packages": packages, "archive": dict(sorted(archive.items()))}


def _entries(value: Any) -> list[Entry]:
    """Package entries from a record's facts (untrusted): only well-formed ones."""
    if not isinstance(value, list):
        return []
    return [p for p in value if isinstance(p, dict) and all(isinstance(p.get(f), str) for f in FIELDS)]


def packages_of(facts: dict[str, Any]) -> list[Entry]:
    return _entries(facts.get("packages"))
