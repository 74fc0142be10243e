"""The evidence beside an image: its SBOMs and its signed provenance (sbom.py, provenance.py),
written from the records of the image's chain when the result file is written (results.py).

Everything comes from the records: the packages from the last disk stage's inventory facts,
the archive state from the InRelease files the stages saw, each stage's key, and, for pulled
stages, the remote and the key that signed the record. So a build that reuses or pulls every
stage writes the same SBOMs without opening the image.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .. import __version__
from ..atomic import write_atomic
from ..cache.record import Record, file_identity, file_sha256
from ..cache.signing import load_signing_key
from ..cache.store import Store
from ..common.reproducible import epoch_of
from . import provenance, sbom
from .inventory import packages_of

SIGNING_KEY_ENV = "VZSTAGES_SIGNING_KEY"


def evidence_paths(workspace: Path, name: str) -> dict[str, Path]:
    return {
        "spdx": workspace / f"{name}.spdx.json",
        "cyclonedx": workspace / f"{name}.cdx.json",
        "provenance": workspace / f"{name}.provenance.json",
    }


def chain_records(cache: Path, chain: list[list[str]]) -> list[Record]:
    store = Store(cache)
    records = []
    for stage, key, *_ in chain:
        record = store.lookup(stage, key, disk=False)
        if record is not None:
            records.append(record)
    return records


def source_date_epoch(records: list[Record]) -> int:
    """SOURCE_DATE_EPOCH when the caller sets it (reproducible-builds.org), else the epoch the
    image's stages were built with (common/reproducible.py), else the newest Release date of the
    archive state the packages came from: a time from the inputs."""
    value = os.environ.get("SOURCE_DATE_EPOCH", "")
    if value.isdigit():
        return int(value)
    epochs = [epoch_of(record.facts) for record in records if "epoch" in record.facts]
    if epochs:
        return max(epochs)
    dates = [
        int(state.get("date", 0))
        for record in records
        for state in (record.facts.get("archive") or {}).values()
        if isinstance(state, dict) and isinstance(state.get("date"), int)
    ]
    return max(dates, default=0)


def write_evidence(
    result: dict[str, Any],
    images: list[dict[str, Any]],
    stages: list[dict[str, Any]],
    previous: dict[str, Any],
) -> dict[str, Any]:
    """Write the SBOMs (unless the same ones are there) and the provenance; returns what the
    result file says of them."""
    workspace, name = Path(result["workspace"]), result["name"]
    paths = evidence_paths(workspace, name)
    records = chain_records(Path(result["cache"]), result["chain"])
    packages = next((packages_of(r.facts) for r in reversed(records) if packages_of(r.facts)), [])
    subject = sbom.Subject(
        name,
        [sbom.ImageFile(Path(i["path"]), i["sha256"]) for i in images],
        packages,
        source_date_epoch(records),
    )
    fingerprint = subject.fingerprint()
    if previous.get("fingerprint") != fingerprint or not all(_same(p, previous) for p in paths.values()):
        sbom.write_spdx(subject, paths["spdx"])
        sbom.write_cyclonedx(subject, paths["cyclonedx"])
    files = {
        kind: {"path": str(p), "sha256": file_sha256(p)} for kind, p in paths.items() if kind != "provenance"
    }
    key_path = os.environ.get(SIGNING_KEY_ENV)
    key = load_signing_key(Path(key_path)) if key_path else None
    statement = build_statement(result, images, files, stages, records, subject)
    document = provenance.envelope(statement, key)
    write_atomic(paths["provenance"], json.dumps(document, indent=1, sort_keys=True) + "\n")
    return {
        "fingerprint": fingerprint,
        "files": {**files, "provenance": {"path": str(paths["provenance"])}},
        "signed_by": document["signatures"][0]["keyid"] if document["signatures"] else None,
        "identities": {str(p): file_identity(p) for p in paths.values() if p.exists()},
    }


def build_statement(
    result: dict[str, Any],
    images: list[dict[str, Any]],
    files: dict[str, dict[str, str]],
    stages: list[dict[str, Any]],
    records: list[Record],
    subject: sbom.Subject,
) -> dict[str, Any]:
    parameters: dict[str, Any] = {}
    for record in records:
        parameters.update(record.inputs.get("manifest") or {})
    return {
        "_type": provenance.STATEMENT_TYPE,
        "subject": [{"name": Path(i["path"]).name, "digest": {"sha256": i["sha256"]}} for i in images]
        + [{"name": Path(f["path"]).name, "digest": {"sha256": f["sha256"]}} for f in files.values()],
        "predicateType": provenance.PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": provenance.BUILD_TYPE,
                "externalParameters": {"manifest": parameters, "manifest_path": result["manifest"]},
                "internalParameters": {
                    "vzstages": __version__,
                    "code": next((r.inputs.get("runtime") for r in records if r.inputs.get("runtime")), ""),
                    "stages": {r.stage: r.key for r in records},
                    "source_date_epoch": subject.epoch,
                },
                "resolvedDependencies": _dependencies(records, subject),
            },
            "runDetails": {
                "builder": {
                    "id": f"urn:vzstages:host:{socket.gethostname()}",
                    "version": {"vzstages": __version__},
                },
                "metadata": {
                    "invocationId": f"{socket.gethostname()}:{os.getpid()}:{time.time_ns()}",
                    "startedOn": _iso(result.get("started", time.time())),
                    "finishedOn": _iso(time.time()),
                },
                "byproducts": _byproducts(stages, records),
            },
        },
    }


def _dependencies(records: list[Record], subject: sbom.Subject) -> list[dict[str, Any]]:
    """Every .deb with its digest, then each suite's InRelease (the archive's state)."""
    archive: dict[str, Any] = {}
    for record in records:
        archive.update(record.facts.get("archive") or {})
    dependencies = [
        {"uri": sbom.purl_of(p), "digest": {"sha256": p["sha256"]}, "annotations": {"suite": p["suite"]}}
        for p in subject.packages
        if p["sha256"]
    ]
    return dependencies + [
        {
            "uri": f"debian-suite:{suite}/InRelease",
            "digest": {"sha256": state.get("inrelease_sha256", "")},
            "annotations": {"date": state.get("date", 0)},
        }
        for suite, state in sorted(archive.items())
        if isinstance(state, dict)
    ]


def _byproducts(stages: list[dict[str, Any]], records: list[Record]) -> list[dict[str, Any]]:
    """Each stage: its checkpoint's digest, whether it was built, reused or pulled, and from where."""
    by_stage = {r.stage: r for r in records}
    byproducts = []
    for stage in stages:
        done = by_stage.get(stage["stage"])
        entry: dict[str, Any] = {"name": f"stage:{stage['stage']}", "digest": {}, "annotations": dict(stage)}
        if done is not None and done.digest:
            entry["digest"] = {"sha256": done.digest}
        if done is not None and stage.get("status") == "pulled" and done.origin:
            entry["annotations"]["origin"] = _origin(done.origin)
        byproducts.append(entry)
    return byproducts


def _origin(origin: dict[str, Any]) -> dict[str, Any]:
    """Where a pulled stage came from, with the key that signed its record as a keyid."""
    described: dict[str, Any] = {
        k: v for k, v in origin.items() if k in ("remote", "blob") and isinstance(v, str)
    }
    signer = origin.get("signer")
    try:
        public = base64.b64decode(str(signer), validate=True) if signer else b""
    except ValueError:
        public = b""
    described["signed_by"] = provenance.keyid(public) if len(public) == 32 else None
    return described


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _same(path: Path, previous: dict[str, Any]) -> bool:
    """The file is the one the last result described (not replaced or edited since)."""
    return path.exists() and previous.get("identities", {}).get(str(path)) == file_identity(path)
