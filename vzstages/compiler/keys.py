"""Stage keys: xxh3_128 over everything a stage's result depends on.

The inputs are kept as a readable dict (stored in the checkpoint record) so that a later plan can
say exactly which input changed. Secrets enter only as hashes. Nothing in the inputs depends on
where the checkout lives or on the machine.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import xxhash

from ..manifest import Manifest
from ..model.task import Task
from ..model.view import ManifestView, covers

# Bump when the stage runner or volume layer changes what a checkpoint contains; task code is
# hashed per task, but the machinery around the tasks is not.
FORMAT_VERSION = 1


def digest(data: bytes) -> str:
    return xxhash.xxh3_128_hexdigest(data)


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def secret_hash(value: Any) -> str:
    # sha256, not xxh3: a secret's hash is stored, so it must not be cheap to invert by guessing.
    return "sha256:" + hashlib.sha256(canonical(value)).hexdigest()


@cache
def _file_digest(path: Path) -> str:
    return digest(path.read_bytes())


def task_fingerprint(task: type[Task]) -> str:
    """The task's code: the source of its module and of the modules it inherits from, and its assets."""
    parts = [task.name()]
    for klass in task.__mro__:
        if issubclass(klass, Task) and klass is not Task:
            module_file = sys.modules[klass.__module__].__file__
            assert module_file is not None
            parts.append(f"{klass.__module__}:{_file_digest(Path(module_file))}")
    parts += [f"{a}:{path_digest(task.asset_path(a))}" for a in task.assets]
    return digest("\n".join(parts).encode())


def path_digest(path: Path) -> str:
    """Content of a file, or of a folder tree (names, modes, contents, link targets)."""
    st = path.lstat()
    if stat.S_ISLNK(st.st_mode):
        return digest(b"link:" + os.readlink(path).encode())
    if stat.S_ISREG(st.st_mode):
        return digest(f"file:{stat.S_IMODE(st.st_mode):o}:".encode() + path.read_bytes())
    if stat.S_ISDIR(st.st_mode):
        entries = [f"{child.name}={path_digest(child)}" for child in sorted(path.iterdir())]
        return digest(f"dir:{stat.S_IMODE(st.st_mode):o}\n".encode() + "\n".join(entries).encode())
    raise ValueError(f"{path}: not a file, folder or link")


def declared_values(tasks: Sequence[type[Task]], manifest: Manifest) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for task in tasks:
        for path in task.reads:
            value = manifest.get(path, None) if manifest.has(path) else {"absent": True}
            if any(covers(path, s) or covers(s, path) for s in manifest.secrets):
                value = _hide_secrets(path, value, manifest.secrets)
            values[path] = value
    return values


def _hide_secrets(path: str, value: Any, secrets: frozenset[str]) -> Any:
    if path in secrets:
        return secret_hash(value)
    if isinstance(value, dict):
        return {k: _hide_secrets(f"{path}.{k}", v, secrets) for k, v in value.items()}
    return value


def input_file_digests(tasks: Sequence[type[Task]], manifest: Manifest) -> dict[str, str]:
    files: dict[str, str] = {}
    for task in tasks:
        view = ManifestView(manifest, task.name(), task.reads)
        for label, path in task.input_files(view).items():
            files[label] = path_digest(path)
    return files


def stage_inputs(
    stage: str,
    parent_key: str | None,
    tasks: Sequence[type[Task]],
    manifest: Manifest,
    archive: dict[str, str] | None = None,
) -> dict[str, Any]:
    inputs: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "stage": stage,
        "parent": parent_key,
        "tasks": [[t.name(), task_fingerprint(t)] for t in tasks],
        "manifest": declared_values(tasks, manifest),
        "files": input_file_digests(tasks, manifest),
    }
    if archive is not None:
        inputs["archive"] = archive
    return inputs


def key_of(inputs: dict[str, Any]) -> str:
    return digest(canonical(inputs))
