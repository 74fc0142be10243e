"""The checkpoint store: `stages/<stage>-<key>.qcow2` plus `stages/<stage>-<key>.json`.

A name never changes meaning: the key is in it. The JSON record is written last, so a checkpoint
without a record is unfinished and never used. Every write goes aside, is fsynced, then renamed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import VzError
from ..runid import run_id


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

    @classmethod
    def from_json(cls, text: str) -> Record:
        data = json.loads(text)
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish_file(tmp: Path, final: Path) -> None:
    """Make `tmp` durable, then atomically give it its final name."""
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, final)
    fsync_dir(final.parent)


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    publish_file(tmp, path)


def output_signature(path: Path) -> str:
    """Identifies one written file cheaply: another build writing the same name changes it."""
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"


def outputs_intact(record: Record) -> bool:
    for name, signature in record.outputs.items():
        path = Path(name)
        if not path.exists() or output_signature(path) != signature:
            return False
    return True


class Store:
    def __init__(self, root: Path):
        self.root = root
        # Downloaded .deb files, shared by all builds; VZSTAGES_PACKAGE_CACHE moves them elsewhere
        # (for example to keep them across throw-away caches in CI).
        self.packages = Path(os.environ.get("VZSTAGES_PACKAGE_CACHE") or root / "debs")
        self.stages = root / "stages"
        self.locks = root / "locks"
        self.runs = root / "runs"

    def secret_key(self) -> bytes:
        """The key secrets are hashed with in this cache's stage keys: made on first use, 0600.
        VZSTAGES_SECRET_KEY_FILE points at another (a team sharing a remote cache shares it)."""
        configured = os.environ.get("VZSTAGES_SECRET_KEY_FILE")
        path = Path(configured) if configured else self.root / "secret.key"
        if not configured and not path.exists():
            self.root.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as f:
                    f.write(secrets.token_hex(32) + "\n")
        try:
            key = path.read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise VzError(f"cannot read the cache's secret key {path}: {exc}") from None
        if len(key) < 32:
            raise VzError(f"the secret key {path} is too short (at least 32 characters)")
        return key.encode()

    def ensure(self) -> None:
        for d in (self.stages, self.locks, self.runs):
            d.mkdir(parents=True, exist_ok=True)

    def checkpoint(self, stage: str, key: str) -> Path:
        return self.stages / f"{stage}-{key}.qcow2"

    def record_path(self, stage: str, key: str) -> Path:
        return self.stages / f"{stage}-{key}.json"

    def temp_checkpoint(self, stage: str, key: str) -> Path:
        # Dot-prefixed and pid-tagged: never mistaken for a checkpoint, and a dead run's leftovers
        # are recognisable by the pid.
        return self.stages / f".{stage}-{key}.{run_id()}.qcow2"

    def lookup(self, stage: str, key: str, *, disk: bool) -> Record | None:
        path = self.record_path(stage, key)
        if not path.exists() or (disk and not self.checkpoint(stage, key).exists()):
            return None
        try:
            return Record.from_json(path.read_text())
        except (ValueError, TypeError):
            return None  # a damaged record is treated as a miss and rewritten

    def records(self, stage: str | None = None) -> list[Record]:
        pattern = f"{stage}-*.json" if stage else "*-*.json"
        found: list[Record] = []
        if not self.stages.exists():
            return found
        for path in sorted(self.stages.glob(pattern)):
            try:
                record = Record.from_json(path.read_text())
            except (ValueError, TypeError):
                continue
            if stage is None or record.stage == stage:
                found.append(record)
        return found

    def save_record(self, record: Record) -> None:
        write_atomic(
            self.record_path(record.stage, record.key), json.dumps(asdict(record), indent=1, sort_keys=True)
        )

    def touch(self, stage: str, key: str) -> None:
        """Mark a checkpoint used now, for least-recently-used collection: the record's mtime is
        its last use (atime would move on every read of the record under relatime)."""
        with contextlib.suppress(OSError):
            os.utime(self.record_path(stage, key))

    @contextlib.contextmanager
    def lock(self, stage: str, key: str) -> Iterator[None]:
        """One builder per key: a second build of the same stage waits, then finds it cached."""
        self.ensure()
        with open(self.locks / f"{stage}-{key}.lock", "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)
