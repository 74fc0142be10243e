"""A checkpoint's record: what the stage was built from, and over exactly which bytes.

A record is untrusted input (a shared cache folder, a remote bucket): `Record.parse` accepts it
only field by field, and JSON is parsed only after its nesting has been bounded.

A qcow2 overlay holds only the clusters its stage changed, so it is valid over exactly the bytes
it was built on. `digest` is the sha256 of the checkpoint file itself, computed once when it is
published (built or pulled); `parent_digest` is the digest of the checkpoint it was built over.
A chain is used only where each link's `parent_digest` is its parent's `digest` (Store.hit).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..model.phases import STAGE_KINDS

STAGE_NAMES = frozenset(kind.name for kind in STAGE_KINDS)
KEY = re.compile(r"[0-9a-f]{32}", re.ASCII)
SHA256 = re.compile(r"[0-9a-f]{64}", re.ASCII)
MAX_RECORD_BYTES = 16 << 20
MAX_JSON_DEPTH = 32


class RecordError(ValueError):
    """A record file that is not a well-formed record."""


def valid_entry(stage: str, key: str) -> bool:
    return stage in STAGE_NAMES and KEY.fullmatch(key) is not None


# A JSON string token (unambiguous, so matched in linear time) and the brackets outside them.
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(rb"[\[\]{}]")


def json_depth(text: str | bytes) -> int:
    """How deeply the JSON text nests, found without parsing it (so without recursing). Strings
    are cut out first; a bracket in an unterminated string still counts, which can only make
    the depth larger, never hide a nesting bomb."""
    data = text.encode() if isinstance(text, str) else text
    depth = deepest = 0
    for bracket in _BRACKETS.findall(_JSON_STRING.sub(b"", data)):
        if bracket in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def load_json(text: str | bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """JSON from an untrusted source: ValueError if it is not JSON or nests deeper than a
    record can (json.loads recurses: a few thousand `[` would end it in RecursionError)."""
    if json_depth(text) > max_depth:
        raise ValueError(f"nested deeper than {max_depth} levels")
    return json.loads(text)


class Hasher(Protocol):
    def update(self, data: bytes, /) -> None: ...

    def hexdigest(self) -> str: ...


def file_digest(path: Path, h: Hasher) -> str:
    """A file's content through `h`, read in large chunks (checkpoints are gigabytes)."""
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def file_sha256(path: Path) -> str:
    return file_digest(path, hashlib.sha256())


# Digests this process took of files it had just written, by the file's identity then: a file
# with the same size, modification time and inode still has those bytes.
_FRESH_DIGESTS: dict[tuple[int, ...], str] = {}


def sha256_while_flushing(path: Path) -> str:
    """A file just written: its SHA-256, read from the page cache while another thread makes it
    durable (the fsync that publishing it needs anyway takes as long as the disk's write). An
    fsync error is left for publishing's own fsync to raise."""
    with open(path, "rb") as f:
        flusher = threading.Thread(target=_fsync_quietly, args=(f.fileno(),))
        flusher.start()
        try:
            digest = file_sha256(path)
        finally:
            flusher.join()
        _FRESH_DIGESTS[tuple(file_identity(path))] = digest
    return digest


def _fsync_quietly(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.fsync(fd)


def fresh_sha256(path: Path) -> str:
    """file_sha256, taken from sha256_while_flushing when the file is still that same file."""
    return _FRESH_DIGESTS.get(tuple(file_identity(path))) or file_sha256(path)


def file_identity(path: Path) -> list[int]:
    """Size, modification time and inode: a digest computed for this identity still holds."""
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def _typed(data: dict[str, Any], name: str, types: tuple[type, ...], default: Any) -> Any:
    value = data.get(name, default)
    if value is default:
        return value
    if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
        raise RecordError(f"field {name!r} is a {type(value).__name__}")
    return value


def _mapping(data: dict[str, Any], name: str, values: tuple[type, ...] | None = None) -> dict[str, Any]:
    value = _typed(data, name, (dict,), {})
    if values is not None:
        for key, item in value.items():
            if isinstance(item, bool) or not isinstance(item, values):
                raise RecordError(f"field {name!r} holds a {type(item).__name__} at {key!r}")
    return dict(value)


def _digest(data: dict[str, Any], name: str) -> str:
    value = _typed(data, name, (str,), "")
    if value and not SHA256.fullmatch(value):
        raise RecordError(f"field {name!r} is not a sha256 digest")
    return str(value)


@dataclass
class Record:
    stage: str
    key: str
    parent: str | None  # the parent stage's key
    parent_stage: str | None
    inputs: dict[str, Any]
    facts: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)  # workspace file -> output_signature
    sizes: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    tools: dict[str, str] = field(default_factory=dict)
    created: float = 0.0
    manifest: str = ""
    # Set when the checkpoint came from a remote cache: the blob it was unpacked from.
    origin: dict[str, Any] = field(default_factory=dict)
    digest: str = ""  # sha256 of this stage's checkpoint file (disk stages)
    parent_digest: str = ""  # sha256 of the checkpoint it was built over ("" for the first stage)

    @classmethod
    def parse(cls, text: str | bytes, stage: str, key: str) -> Record:
        """A record read from `<stage>-<key>.json`; RecordError unless every field has its type
        and the stage and key inside are those of the file's name."""
        try:
            data = load_json(text)
        except ValueError as exc:
            raise RecordError(f"not JSON ({exc})") from None
        return cls.from_document(data, stage, key)

    @classmethod
    def from_document(cls, data: Any, stage: str, key: str) -> Record:
        if not isinstance(data, dict):
            raise RecordError(f"a JSON {type(data).__name__}, not an object")
        if data.get("stage") != stage or data.get("key") != key:
            raise RecordError("its stage and key are not those of its file name")
        parent = _typed(data, "parent", (str,), None)
        parent_stage = _typed(data, "parent_stage", (str,), None)
        if (parent is None) != (parent_stage is None) or (
            parent is not None and not valid_entry(parent_stage, parent)
        ):
            raise RecordError("its parent is not a stage and key")
        created = _typed(data, "created", (int, float), 0.0)
        return cls(
            stage=stage,
            key=key,
            parent=parent,
            parent_stage=parent_stage,
            inputs=_mapping(data, "inputs"),
            facts=_mapping(data, "facts"),
            outputs=_mapping(data, "outputs", (str,)),
            sizes=_mapping(data, "sizes", (int,)),
            timings=_mapping(data, "timings", (int, float)),
            tools=_mapping(data, "tools", (str,)),
            created=float(created),
            manifest=_typed(data, "manifest", (str,), ""),
            origin=_mapping(data, "origin"),
            digest=_digest(data, "digest"),
            parent_digest=_digest(data, "parent_digest"),
        )

    def document(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.document(), indent=1, sort_keys=True)

    @property
    def name(self) -> str:
        return f"{self.stage}-{self.key}"
