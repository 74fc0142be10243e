"""`<name>.json` beside every image: what a pipeline needs without scraping the console.

Written at the end of every run that built, pulled or confirmed an image: each image file with
its format, size, virtual size and SHA-256; the manifest; every stage with its key and what this
run did with it (built, pulled, reused) and how long that took; the vzstages version; and the
result of publishing (an AMI) where the provider wrote one.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from . import __version__
from .atomic import write_atomic
from .bounded import MAX_RESULT_BYTES, read_regular
from .cache.record import file_identity, fresh_sha256, load_json
from .evidence.writer import write_evidence
from .host import Host

# Image files by extension: the qemu format to read them as (others are listed without one).
QEMU_FORMATS = {"qcow2": "qcow2", "raw": "raw", "vmdk": "vmdk", "vdi": "vdi", "vhd": "vpc"}


def result_path(workspace: Path, image_name: str) -> Path:
    return workspace / f"{image_name}.json"


def _previous(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The last result's entries by file (to reuse a digest of a file that has not changed),
    and what it said of the evidence (to rewrite SBOMs only when they would differ)."""
    try:
        data = load_json(read_regular(path, MAX_RESULT_BYTES))
        images = {f["path"]: f for f in data.get("images", []) if isinstance(f, dict) and "path" in f}
        evidence = data.get("evidence")
        return images, evidence if isinstance(evidence, dict) else {}
    except (OSError, ValueError, AttributeError, TypeError):
        return {}, {}


def describe(image: Path, previous: dict[str, Any]) -> dict[str, Any]:
    """One output file: its digest (reused while the file is the same file), size and format."""
    identity = file_identity(image)
    known = previous.get(str(image), {})
    if known.get("identity") == identity and isinstance(known.get("sha256"), str):
        return known
    ext = image.name.rsplit(".", 1)[-1]
    entry: dict[str, Any] = {
        "path": str(image),
        "format": ext,
        "size": identity[0],
        "sha256": fresh_sha256(image),
        "identity": identity,
    }
    if ext in QEMU_FORMATS:
        info = Host().run(
            ["qemu-img", "info", "--output=json", "-f", QEMU_FORMATS[ext], str(image)], check=False
        )
        try:
            entry["virtual_size"] = int(json.loads(info.output)["virtual-size"])
        except (ValueError, KeyError, TypeError):
            entry["virtual_size"] = None
    return entry


def write_result(result: dict[str, Any], images: list[Path], stages: list[dict[str, Any]]) -> Path:
    """Write the result file of one manifest's image stage; returns its path."""
    path = result_path(Path(result["workspace"]), result["name"])
    previous, evidence = _previous(path)
    described = [describe(image, previous) for image in images if image.is_file()]
    document: dict[str, Any] = {
        "vzstages": __version__,
        "name": result["name"],
        "manifest": result["manifest"],
        "provider": result["provider"],
        "images": described,
        "stages": stages,
    }
    if described and result.get("cache"):
        document["evidence"] = write_evidence(result, described, stages, evidence)
    ami = Path(result["workspace"]) / f"{result['name']}.ami.json"
    if ami.is_file():
        with contextlib.suppress(OSError, ValueError):
            document["published"] = load_json(read_regular(ami, MAX_RESULT_BYTES))
    write_atomic(path, json.dumps(document, indent=1, sort_keys=True) + "\n")
    return path


def made_from(path: Path) -> tuple[str, str] | None:
    """(manifest, image stage key) of the image a result file describes, or None."""
    try:
        data = load_json(read_regular(path, MAX_RESULT_BYTES))
        keys = [s["key"] for s in data["stages"] if isinstance(s, dict) and s.get("stage") == "image"]
        return (str(data["manifest"]), str(keys[0])) if keys else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
