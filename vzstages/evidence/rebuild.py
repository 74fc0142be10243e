"""`vzstages verify IMAGE --rebuild`: build the image again from what its provenance records, in
a scratch cache, and say stage by stage whether the same key gave the same bytes.

The rebuild takes the manifest the provenance names, the archive state this host's cache holds
(the same InRelease digests, so the same keys), and the .debs from the package cache (or the
mirror). A stage whose rebuilt key differs from the provenance's had other inputs (the archive
moved on, another vzstages): that is said, not compared. Exit 0 only when the image is identical.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from ..cache.store import Store
from ..errors import VzError
from ..host import Host


def recorded(statement: dict[str, Any]) -> tuple[Path, dict[str, str], dict[str, str]]:
    """The manifest, {stage: key} and {stage: checkpoint digest} the provenance records."""
    try:
        definition = statement["predicate"]["buildDefinition"]
        manifest = Path(str(definition["externalParameters"]["manifest_path"]))
        keys = {str(k): str(v) for k, v in definition["internalParameters"]["stages"].items()}
        digests = {
            str(b["name"]).removeprefix("stage:"): str((b.get("digest") or {}).get("sha256", ""))
            for b in statement["predicate"]["runDetails"]["byproducts"]
        }
    except (KeyError, TypeError, AttributeError):
        raise VzError("the provenance does not record the build's manifest and stages") from None
    return manifest, keys, digests


def rebuild(statement: dict[str, Any], image: Path, expected: str, cache: Path) -> tuple[bool, list[str]]:
    """(identical, one line per stage) for a rebuild of the provenance's image."""
    from ..build import load_plan
    from ..cache.record import file_sha256

    manifest, keys, digests = recorded(statement)
    if not manifest.is_file():
        raise VzError(f"the manifest the provenance names, {manifest}, is not here to rebuild from")
    with tempfile.TemporaryDirectory(prefix="vzstages-rebuild-") as scratch:
        work = Path(scratch)
        copy = scratch_manifest(manifest, work)
        seed_archive_state(Store(cache), Store(work / "cache"))
        env = {**os.environ, "VZSTAGES_PACKAGE_CACHE": str(Store(cache).packages)}
        build = [sys.executable, "-m", "vzstages", "--cache", str(work / "cache"), "build", "--no-publish"]
        done = Host().run([*build, "--force", str(copy)], env=env, check=False)
        if done.returncode != 0:
            tail = done.output.strip().splitlines()[-3:]
            raise VzError("the rebuild failed: " + " / ".join(tail))
        plan = load_plan(copy, work / "cache", publish=False)
        lines = [stage_line(plan, stage.name, stage.key, keys, digests) for stage in plan.stages]
        rebuilt = next((p for p in plan.stage("image").outputs if p.name == image.name), None)
        actual = file_sha256(rebuilt) if rebuilt and rebuilt.is_file() else ""
    identical = actual == expected
    verdict = (
        "identical"
        if identical
        else f"differs: rebuilt sha256:{actual[:16]}, provenance sha256:{expected[:16]}"
    )
    return identical, [*lines, f"{image.name}: {verdict}"]


def stage_line(plan: Any, name: str, key: str, keys: dict[str, str], digests: dict[str, str]) -> str:
    if keys.get(name) != key:
        theirs = keys.get(name, "?")[:12]
        return f"  {name:<9}other inputs: its key is {key[:12]} here, {theirs} in the provenance"
    record = plan.store.lookup(name, key, disk=False)
    ours, theirs = (record.digest if record else ""), digests.get(name, "")
    if not theirs:
        return f"  {name:<9}same key (no checkpoint to compare)"
    if ours == theirs:
        return f"  {name:<9}identical (sha256:{ours[:16]})"
    return f"  {name:<9}differs: rebuilt sha256:{ours[:16]}, provenance sha256:{theirs[:16]}"


def scratch_manifest(manifest: Path, work: Path) -> Path:
    """The manifest, writing into the scratch folder (nothing else changes: workspace is no input)."""
    data = yaml.safe_load(manifest.read_text())
    if not isinstance(data, dict):
        raise VzError(f"{manifest}: not a manifest")
    data.setdefault("bootstrapper", {})["workspace"] = str(work / "build")
    copy = work / manifest.name
    copy.write_text(yaml.safe_dump(data, sort_keys=False))
    return copy


def seed_archive_state(source: Store, target: Store) -> None:
    """The archive state this host last saw: the same InRelease digests give the same keys."""
    (target.root / "archive").mkdir(parents=True, exist_ok=True)
    for state in (source.root / "archive").glob("*.json"):
        shutil.copyfile(state, target.root / "archive" / state.name)
