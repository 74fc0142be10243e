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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import xxhash

from ..errors import InputError
from ..manifest import Manifest
from ..model.task import Task
from ..model.view import ManifestView, covers
from . import code

# Bump when what a checkpoint or its record means changes in a way no code digest shows (the
# record's schema, the key's own layout). Task code and the stage runtime are hashed (code.py).
FORMAT_VERSION = 2


def digest(data: bytes) -> str:
    return xxhash.xxh3_128_hexdigest(data)


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def secret_hash(value: Any) -> str:
    # sha256, not xxh3: a secret's hash is stored, so it must not be cheap to invert by guessing.
    return "sha256:" + hashlib.sha256(canonical(value)).hexdigest()


def task_fingerprint(task: type[Task]) -> str:
    """The task's code: every vzstages module it can run (code.py), and its assets."""
    modules = {klass.__module__ for klass in task.__mro__ if issubclass(klass, Task)}
    parts = [task.name(), code.code_digest(code.closure(modules))]
    parts += [f"{a}:{input_digest(task.asset_path(a))}" for a in task.assets]
    return digest("\n".join(parts).encode())


def input_digest(path: Path) -> str:
    """What the build reads from a host input: a file's content and mode, or a folder's tree.

    A symlink given as the input is followed, as the build follows it (rotate a key behind a link
    and the key changes); symlinks below a folder are hashed as their text, as they are copied.
    Anything but a regular file or a folder (a FIFO, a device) is refused: reading it could hang.
    """
    try:
        st = path.stat()
    except OSError as exc:
        raise InputError(f"{path}: {exc.strerror}") from exc
    if stat.S_ISREG(st.st_mode):
        return _file_digest(path, st)
    if stat.S_ISDIR(st.st_mode):
        return _tree_digest(path)
    raise InputError(f"{path}: not a regular file or folder")


def _file_digest(path: Path, st: os.stat_result) -> str:
    h = xxhash.xxh3_128(f"file:{stat.S_IMODE(st.st_mode):o}:".encode())
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _tree_digest(folder: Path) -> str:
    h = xxhash.xxh3_128(f"dir:{stat.S_IMODE(folder.stat().st_mode):o}\n".encode())
    for name in sorted(os.listdir(folder)):
        child = folder / name
        st = child.lstat()
        if stat.S_ISLNK(st.st_mode):
            entry = "link:" + xxhash.xxh3_128_hexdigest(os.fsencode(os.readlink(child)))
        elif stat.S_ISREG(st.st_mode):
            entry = _file_digest(child, st)
        elif stat.S_ISDIR(st.st_mode):
            entry = _tree_digest(child)
        else:
            raise InputError(f"{child}: not a regular file, folder or symlink")
        h.update(os.fsencode(name) + b"=" + entry.encode() + b"\n")
    return h.hexdigest()


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
            files[label] = input_digest(path)
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
        "runtime": code.runtime_fingerprint(),
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
