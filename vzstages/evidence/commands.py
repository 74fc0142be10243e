"""`vzstages verify IMAGE` and `vzstages diff A B`: what the evidence beside an image proves.

verify: the image's SHA-256 is a subject of its provenance, a trusted key signed the provenance
(DSSE), and the SBOMs beside the image are the ones the provenance names. Exit 0 only then;
otherwise one line saying which check failed.

diff: the packages added, removed and changed between two images (their CycloneDX SBOMs), or
two SBOMs, or two manifests (the SBOMs of their last builds).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from ..bounded import read_regular
from ..cache.record import file_sha256, load_json
from ..cache.signing import load_trusted_keys
from ..errors import VzError
from .provenance import MAX_ENVELOPE_BYTES, ProvenanceError, open_envelope
from .tree_diff import diff_files, file_lines

TRUSTED_KEYS_ENV = "VZSTAGES_TRUSTED_KEYS"
MAX_SBOM_BYTES = 64 << 20
SBOM_SUFFIXES = (".cdx.json", ".spdx.json")


def evidence_stem(image: Path) -> Path:
    """`x/debian-kvm.qcow2` -> `x/debian-kvm`, `x/debian-gce.tar.gz` -> `x/debian-gce`: the
    evidence files are `<stem>.provenance.json` and so on, as the image's name gives them."""
    stem = image.with_suffix("")
    if stem.suffix in (".tar",):
        stem = stem.with_suffix("")
    return stem


def read_bounded(path: Path, limit: int, what: str) -> bytes:
    """A file given on the command line, bounded (a FIFO or a device is refused, never read)."""
    try:
        return _read(path, limit, what)
    except VzError as exc:
        raise ProvenanceError(f"missing file: {exc}") from None


def _read(path: Path, limit: int, what: str) -> bytes:
    try:
        return read_regular(path, limit)
    except FileNotFoundError:
        raise VzError(f"{what} {path}: no such file") from None
    except OSError as exc:
        raise VzError(f"{what} {path}: {exc.strerror}") from None


def verify(image: Path, provenance: Path | None, trusted_keys: Path | None) -> tuple[str, dict[str, Any]]:
    """One line of what was proven, and the statement; ProvenanceError with the failed check."""
    if not image.is_file():
        raise ProvenanceError(f"missing file: the image {image} does not exist")
    provenance = provenance or evidence_stem(image).with_suffix(".provenance.json")
    if trusted_keys is None:
        raise ProvenanceError(f"no trusted keys: give --trusted-keys FILE (or {TRUSTED_KEYS_ENV})")
    trusted = load_trusted_keys(trusted_keys)
    statement, signer = open_envelope(read_bounded(provenance, MAX_ENVELOPE_BYTES, "provenance"), trusted)
    subjects = _subjects(statement)
    if image.name not in subjects:
        raise ProvenanceError(f"the provenance does not name {image.name} as a subject")
    actual = file_sha256(image)
    if actual != subjects[image.name]:
        raise ProvenanceError(
            f"digest mismatch: {image.name} is sha256:{actual[:16]}, the provenance says "
            f"sha256:{subjects[image.name][:16]}"
        )
    sboms = [name for name in subjects if name.endswith(SBOM_SUFFIXES)]
    for name in sboms:
        path = image.parent / name
        if not path.is_file():
            raise ProvenanceError(f"missing file: the SBOM {path} the provenance names")
        if file_sha256(path) != subjects[name]:
            raise ProvenanceError(f"digest mismatch: the SBOM {name} is not the one the provenance names")
    return (
        f"verified {image.name}: sha256:{actual[:16]}, signed by {signer}, {len(sboms)} SBOMs match",
        statement,
    )


def _subjects(statement: dict[str, Any]) -> dict[str, str]:
    subjects = {}
    for subject in statement.get("subject") or []:
        if isinstance(subject, dict) and isinstance(subject.get("digest"), dict):
            subjects[str(subject.get("name"))] = str(subject["digest"].get("sha256", ""))
    return subjects


def sbom_of(target: Path) -> Path:
    """The CycloneDX SBOM for an image, an SBOM or a manifest given on the command line."""
    if target.name.endswith(".cdx.json"):
        return target
    if target.name.endswith(".spdx.json"):
        return target.with_name(target.name.removesuffix(".spdx.json") + ".cdx.json")
    if target.suffix in (".yml", ".yaml"):
        from ..manifest import load_manifest

        manifest = load_manifest(target)
        return manifest.workspace / f"{manifest.image_name}.cdx.json"
    return evidence_stem(target).with_suffix(".cdx.json")


def packages_in(sbom: Path) -> dict[tuple[str, str], str]:
    """{(name, architecture): version} of the Debian packages a CycloneDX SBOM lists."""
    from packageurl import PackageURL

    try:
        document = load_json(_read(sbom, MAX_SBOM_BYTES, "SBOM"))
    except ValueError as exc:
        raise VzError(f"SBOM {sbom}: not JSON ({exc})") from None
    packages = {}
    for component in document.get("components", []) if isinstance(document, dict) else []:
        purl = component.get("purl") if isinstance(component, dict) else None
        try:
            parsed = PackageURL.from_string(str(purl)) if purl else None
        except ValueError:
            continue
        if parsed is not None and parsed.type == "deb":
            arch = str((parsed.qualifiers or {}).get("arch", ""))
            packages[(parsed.name, arch)] = str(parsed.version)
    return packages


def diff(a: Path, b: Path) -> dict[str, Any]:
    old, new = packages_in(sbom_of(a)), packages_in(sbom_of(b))
    label = {k: f"{k[0]}:{k[1]}" for k in old.keys() | new.keys()}
    return {
        "added": {label[k]: new[k] for k in sorted(new.keys() - old.keys())},
        "removed": {label[k]: old[k] for k in sorted(old.keys() - new.keys())},
        "changed": {label[k]: [old[k], new[k]] for k in sorted(old.keys() & new.keys()) if old[k] != new[k]},
    }


def cmd_verify(args: argparse.Namespace) -> int:
    keys = args.trusted_keys or os.environ.get(TRUSTED_KEYS_ENV)
    image = Path(args.image)
    try:
        line, statement = verify(
            image, Path(args.provenance) if args.provenance else None, Path(keys) if keys else None
        )
    except ProvenanceError as exc:
        print(f"FAILED {args.image}: {exc}")
        return 1
    print(line)
    if not args.rebuild:
        return 0
    from ..cache.store import cache_folder
    from .rebuild import rebuild

    print(f"rebuilding {image.name} from its provenance in a scratch cache ...", flush=True)
    identical, lines = rebuild(statement, image, _subjects(statement)[image.name], cache_folder(args.cache))
    print("\n".join(lines))
    return 0 if identical else 1


def cmd_diff(args: argparse.Namespace) -> int:
    changes: dict[str, Any] = diff(Path(args.a), Path(args.b))
    files = diff_files(Path(args.a), Path(args.b), args.cache) if args.files else None
    if args.json:
        print(json.dumps({**changes, **({"files": files} if files else {})}, indent=1, sort_keys=True))
        return 0
    for name, version in changes["added"].items():
        print(f"+ {name} {version}")
    for name, version in changes["removed"].items():
        print(f"- {name} {version}")
    for name, (old, new) in changes["changed"].items():
        print(f"~ {name} {old} -> {new}")
    counts = {kind: len(items) for kind, items in changes.items()}
    print(f"{counts['added']} added, {counts['removed']} removed, {counts['changed']} changed")
    if files:
        print("\n".join(file_lines(files)))
    return 0


def add_commands(sub: Any) -> None:
    p = sub.add_parser("verify", help="check an image against its signed provenance and SBOMs")
    p.add_argument("image")
    p.add_argument("--provenance", help="the provenance file (default: beside the image)")
    p.add_argument("--trusted-keys", help=f"OpenSSH public keys, one a line ({TRUSTED_KEYS_ENV})")
    p.add_argument(
        "--rebuild",
        action="store_true",
        help="build it again from the provenance's inputs in a scratch cache and say, stage by stage, "
        "whether the same key gave the same bytes (root)",
    )
    p.add_argument(
        "--cache", default=argparse.SUPPRESS, help="the cache whose archive state and .debs to use"
    )
    p.set_defaults(func=cmd_verify)
    p = sub.add_parser("diff", help="packages added, removed and changed between two images")
    p.add_argument("a", help="an image, its SBOM, or a manifest (its last build)")
    p.add_argument("b")
    p.add_argument("--json", action="store_true", help="print the changes as JSON")
    p.add_argument(
        "--files",
        action="store_true",
        help="also the files added, removed and changed (path, mode, owner, size, digest), read from "
        "the two manifests' trees in the cache (root)",
    )
    p.add_argument("--cache", default=argparse.SUPPRESS, help="checkpoint cache folder, for --files")
    p.set_defaults(func=cmd_diff)
