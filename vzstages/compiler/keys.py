"""Stage keys: xxh3_128 over everything a stage's result depends on.

The inputs are kept as a readable dict (stored in the checkpoint record) so that a later plan can
say exactly which input changed. Secrets enter only as hashes. Nothing in the inputs depends on
where the checkout lives or on the machine.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import xxhash

from ..errors import InputError
from ..manifest import Manifest
from ..manifest.keypath import covers
from ..model.task import InputTree, Task
from ..model.view import ManifestView
from . import code

# Bump when what a checkpoint or its record means changes in a way no code digest shows (the
# record's schema, the key's own layout). Task code and the stage runtime are hashed (code.py).
FORMAT_VERSION = 3


def digest(data: bytes) -> str:
    return xxhash.xxh3_128_hexdigest(data)


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def secret_hash(value: Any, key: bytes) -> str:
    """A secret as it enters a stage key: HMAC-SHA256 under the cache's secret key, so a record
    that leaks cannot be checked against a word list without that key too."""
    return "hmac-sha256:" + hmac.new(key, canonical(value), hashlib.sha256).hexdigest()


def task_fingerprint(task: type[Task]) -> str:
    """The task's code: every vzstages module it can run (code.py), and its assets."""
    modules = {klass.__module__ for klass in task.__mro__ if issubclass(klass, Task)}
    parts = [task.name(), code.code_digest(code.closure(modules))]
    parts += [f"{a}:{input_digest(task.asset_path(a))}" for a in task.assets]
    return digest("\n".join(parts).encode())


def input_digest(source: Path | InputTree) -> str:
    """What the build reads from a host input: a file's content and mode, or a folder's tree.

    A symlink given as the input is followed, as the build follows it (rotate a key behind a link
    and the key changes); symlinks below a folder are hashed as their text, as they are copied.
    Anything but a regular file or a folder (a FIFO, a device) is refused: reading it could hang.
    An InputTree leaves out what it excludes and counts special files by name.
    """
    if isinstance(source, InputTree):
        return _tree_digest(source.path, frozenset(p.resolve() for p in source.exclude), lenient=True)
    path = source
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


def _tree_digest(folder: Path, exclude: frozenset[Path] = frozenset(), lenient: bool = False) -> str:
    try:
        h = xxhash.xxh3_128(f"dir:{stat.S_IMODE(folder.stat().st_mode):o}\n".encode())
        names = sorted(os.listdir(folder))
    except OSError as exc:
        raise InputError(f"{folder}: {exc.strerror}") from exc
    for name in names:
        child = folder / name
        st = child.lstat()
        if stat.S_ISDIR(st.st_mode) and exclude and child.resolve() in exclude:
            continue
        if stat.S_ISLNK(st.st_mode):
            entry = "link:" + xxhash.xxh3_128_hexdigest(os.fsencode(os.readlink(child)))
        elif stat.S_ISREG(st.st_mode):
            entry = _file_digest(child, st)
        elif stat.S_ISDIR(st.st_mode):
            entry = _tree_digest(child, exclude, lenient)
        elif lenient:
            entry = f"special:{stat.S_IFMT(st.st_mode):o}"
        else:
            raise InputError(f"{child}: not a regular file, folder or symlink")
        h.update(os.fsencode(name) + b"=" + entry.encode() + b"\n")
    return h.hexdigest()


def declared_values(tasks: Sequence[type[Task]], manifest: Manifest, secret_key: bytes) -> dict[str, Any]:
    """The values of the keys the tasks read, and of the keys and date fields their templates
    name. Secrets enter as keyed hashes; secret text inside other values is replaced by one."""
    values: dict[str, Any] = {}
    for task in tasks:
        referenced, dates = manifest.referenced(task.reads)
        for dotted in (*task.reads, *referenced):
            value = manifest.get(dotted) if manifest.has(dotted) else {"absent": True}
            path = manifest.keypath(dotted)
            secrets = [s for s in manifest.secrets if covers(path, s) or covers(s, path)]
            values[dotted] = _hide(value, path, secrets, frozenset(manifest.secret_text), secret_key)
        values.update({f"{{{name}}}": text for name, text in dates.items()})
    return values


def _hide(
    value: Any, path: tuple[str, ...], secrets: list[tuple[str, ...]], text: frozenset[str], key: bytes
) -> Any:
    if any(covers(s, path) for s in secrets):
        return secret_hash(value, key)
    if isinstance(value, dict):
        return {k: _hide(v, (*path, k), secrets, text, key) for k, v in value.items()}
    if isinstance(value, list):
        return [_hide(v, path, secrets, text, key) for v in value]
    if isinstance(value, str):
        for secret in sorted(text, key=len, reverse=True):
            value = value.replace(secret, f"<{secret_hash(secret, key)}>")
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
    secret_key: bytes,
    archive: dict[str, str] | None = None,
    tools: dict[str, str] | None = None,
) -> dict[str, Any]:
    inputs: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "runtime": code.runtime_fingerprint(),
        "stage": stage,
        "parent": parent_key,
        "tasks": [[t.name(), task_fingerprint(t)] for t in tasks],
        "manifest": declared_values(tasks, manifest, secret_key),
        "files": input_file_digests(tasks, manifest),
    }
    if archive is not None:
        inputs["archive"] = archive
    if tools:
        inputs["host_tools"] = tools
    return inputs


def key_of(inputs: dict[str, Any]) -> str:
    return digest(canonical(inputs))
