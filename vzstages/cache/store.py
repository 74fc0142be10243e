"""The checkpoint store: `stages/<stage>-<key>.qcow2` plus `stages/<stage>-<key>.json`.

A name never changes meaning: the key is in it. The JSON record is written last, so a checkpoint
without a record is unfinished and never used. Every write goes aside, is fsynced, then renamed.

The store's files are untrusted input: anyone who can write the cache folder can put anything
there. A stage and key come only from a file's name, checked against STAGE_NAMES and a 32-digit
hex key, so every path the store touches is one it built itself inside `stages/` or `locks/`; a
record that is not well formed (see Record.parse) is skipped with a warning, never a traceback.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import secrets
import stat
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ..atomic import publish_file, write_atomic
from ..bounded import read_regular
from ..errors import VzError
from ..model.phases import STAGE_KINDS
from ..runid import run_id
from . import qcow2
from .record import MAX_RECORD_BYTES, STAGE_NAMES, Record, RecordError, file_sha256, valid_entry

log = logging.getLogger("vzstages.progress")

ENTRY = re.compile(r"(?P<stage>[a-z]+)-(?P<key>[0-9a-f]{32})\.(?P<ext>json|qcow2)", re.ASCII)


def output_signature(path: Path) -> str:
    """Identifies one written file cheaply: another build writing the same name changes it."""
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"


def outputs_intact(record: Record) -> bool:
    for name, signature in record.outputs.items():
        path = Path(name)
        try:
            if output_signature(path) != signature:
                return False
        except OSError:
            return False
    return True


def _regular(path: Path) -> bool:
    """A regular file, not a symlink (the store never follows a link out of its folder)."""
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except OSError:
        return False


def _open_lock(path: Path) -> IO[str]:
    # O_NOFOLLOW and no truncation: a planted symlink or file in locks/ is never written through.
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    return os.fdopen(fd, "r+")


@dataclass
class Entry:
    """One record in the store, with what it costs on disk and when it was last used."""

    record: Record
    record_path: Path
    checkpoint: Path | None

    @property
    def name(self) -> str:
        return f"{self.record.stage}-{self.record.key}"

    @property
    def size(self) -> int:
        if self.checkpoint is None:
            return 0
        try:
            return self.checkpoint.lstat().st_blocks * 512
        except OSError:
            return 0

    @property
    def last_used(self) -> float:
        try:
            return self.record_path.lstat().st_mtime
        except OSError:
            return 0.0


def cache_folder(text: str | Path) -> Path:
    """The cache folder a user named; an empty name is an error, not the current folder."""
    if not str(text).strip():
        raise VzError("the cache folder is empty: name one (--cache DIR, doit cache=DIR), ./cache by default")
    return Path(text).resolve()


class Store:
    def __init__(self, root: Path):
        self.root = root
        # Downloaded .deb files, shared by all builds; VZSTAGES_PACKAGE_CACHE moves them elsewhere
        # (for example to keep them across throw-away caches in CI).
        self.packages = Path(os.environ.get("VZSTAGES_PACKAGE_CACHE") or root / "debs")
        self.stages = root / "stages"
        self.locks = root / "locks"
        self.runs = root / "runs"
        self.warnings: list[str] = []
        self._held: list[IO[str]] = []

    def check_usable(self) -> None:
        """A clear error when the cache folder cannot be one (a file, /dev/null ...)."""
        for path in (self.root, self.stages, self.locks, self.runs):
            if path.exists() and not path.is_dir():
                raise VzError(f"the cache {self.root} cannot be used: {path} is not a folder")

    def ensure(self) -> None:
        self.check_usable()
        try:
            for d in (self.stages, self.locks, self.runs):
                d.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise VzError(f"the cache {self.root} cannot be used: {exc.strerror} ({exc.filename})") from None

    def secret_key(self) -> bytes:
        """The key secrets are hashed with in this cache's stage keys: made on first use, 0600.
        VZSTAGES_SECRET_KEY_FILE points at another (a team sharing a remote cache shares it)."""
        configured = os.environ.get("VZSTAGES_SECRET_KEY_FILE")
        path = Path(configured) if configured else self.root / "secret.key"
        if not configured and not path.exists():
            self.check_usable()
            self.root.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                with os.fdopen(fd, "w") as f:
                    f.write(secrets.token_hex(32) + "\n")
        try:
            with open(path, "rb") as f:
                key = f.read(4096).decode().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise VzError(f"cannot read the cache's secret key {path}: {exc}") from None
        if len(key) < 32:
            raise VzError(f"the secret key {path} is too short (at least 32 characters)")
        return key.encode()

    # --- names ------------------------------------------------------------------------------
    def checkpoint(self, stage: str, key: str) -> Path:
        self._check_name(stage, key)
        return self.stages / f"{stage}-{key}.qcow2"

    def record_path(self, stage: str, key: str) -> Path:
        self._check_name(stage, key)
        return self.stages / f"{stage}-{key}.json"

    def temp_checkpoint(self, stage: str, key: str) -> Path:
        # Dot-prefixed and pid-tagged: never mistaken for a checkpoint, and a dead run's leftovers
        # are recognisable by the pid.
        self._check_name(stage, key)
        return self.stages / f".{stage}-{key}.{run_id()}.qcow2"

    @staticmethod
    def _check_name(stage: str, key: str) -> None:
        if not valid_entry(stage, key):
            raise VzError(f"not a stage and key: {stage!r} {key!r}")

    # --- reading ----------------------------------------------------------------------------
    def _read(self, stage: str, key: str) -> Record:
        path = self.record_path(stage, key)
        if not _regular(path):  # not followed: a record is never a link
            raise RecordError("not a regular file")
        try:
            text = read_regular(path, MAX_RECORD_BYTES).decode()
        except FileNotFoundError:
            raise
        except (OSError, UnicodeDecodeError) as exc:
            raise RecordError(exc.strerror if isinstance(exc, OSError) else str(exc)) from None
        return Record.parse(text, stage, key)

    def _warn(self, path: Path, problem: str) -> None:
        message = f"warning: skipping {path}: {problem}"
        if message not in self.warnings:
            self.warnings.append(message)
            log.warning("%s", message)

    def lookup(self, stage: str, key: str, *, disk: bool) -> Record | None:
        """The record of a complete entry (its checkpoint there too, for a disk stage), or None."""
        if not valid_entry(stage, key):
            return None
        if disk and not _regular(self.checkpoint(stage, key)):
            return None
        try:
            return self._read(stage, key)
        except FileNotFoundError:
            return None
        except RecordError as exc:
            if self.record_path(stage, key).exists() or self.record_path(stage, key).is_symlink():
                self._warn(self.record_path(stage, key), str(exc))
            return None

    def hit(
        self,
        stage: str,
        key: str,
        *,
        disk: bool,
        outputs: Sequence[Path],
        touch: bool,
        base: tuple[str, str] | None = None,
    ) -> Record | None:
        """THE definition of a cache hit, for the plan, the runner and doit's up-to-date check:
        a well-formed record, its checkpoint and the checkpoints it is backed by all there, each
        link built over exactly its parent's bytes, and the workspace files it wrote unchanged.
        `base`: for a stage without a checkpoint (image, publish), the disk stage it was made
        from. `touch` marks it used now (for gc's LRU order)."""
        record = self.lookup(stage, key, disk=disk)
        if record is None:
            return None
        if any(not p.exists() for p in outputs) or not outputs_intact(record):
            return None
        if self.chain_problem(record, disk=disk, base=base) is not None:
            return None
        if touch:
            self.touch(stage, key)
        return record

    def chain_problem(
        self, record: Record, *, disk: bool = True, base: tuple[str, str] | None = None
    ) -> str | None:
        """None if the record's checkpoint chain is whole and linked by content, else why not:
        every checkpoint there, each backed by exactly its parent's file (a tampered header
        could make qemu open any host file as a backing file), and each built over the bytes
        its parent's record names (an overlay over other bytes is not an image at all)."""
        if not disk:
            if base is None:
                return None
            below = self.lookup(*base, disk=True)
            if below is None:
                return f"{base[0]}-{base[1][:12]} is not in the cache"
            if record.parent_digest != below.digest:
                return _link_problem(record, below)
            return self.chain_problem(below)
        node = record
        for _ in range(len(STAGE_KINDS)):
            if not node.digest:
                return f"{node.stage}-{node.key[:12]} has no digest (made by an older vzstages)"
            parent = None
            if node.parent is not None and node.parent_stage is not None:
                parent = self.lookup(node.parent_stage, node.parent, disk=True)
                if parent is None:
                    return f"its parent {node.parent_stage}-{node.parent[:12]} is not in the cache"
                if node.parent_digest != parent.digest:
                    return _link_problem(node, parent)
            checkpoint = self.checkpoint(node.stage, node.key)
            expected = self.checkpoint(parent.stage, parent.key).name if parent else None
            problem = qcow2.check_backing(checkpoint, expected)
            if problem:
                self._warn(checkpoint, problem)
                return f"{checkpoint.name}: {problem}"
            if parent is None:
                return None
            node = parent
        return "its chain is longer than a plan's"

    def entries(self) -> list[Entry]:
        """Every well-formed record, by name; anything else in stages/ is skipped with a warning."""
        found: list[Entry] = []
        if not self.stages.is_dir():
            return found
        for path in sorted(self.stages.iterdir()):
            match = ENTRY.fullmatch(path.name)
            if path.name.startswith(".") or not match:
                continue
            if match["ext"] != "json":
                continue
            stage, key = match["stage"], match["key"]
            if stage not in STAGE_NAMES:
                self._warn(path, f"{stage!r} is not a stage")
                continue
            try:
                record = self._read(stage, key)
            except (RecordError, OSError) as exc:
                self._warn(path, str(exc))
                continue
            checkpoint = self.checkpoint(stage, key)
            if checkpoint.exists() and not _regular(checkpoint):
                self._warn(checkpoint, "not a regular file")
                continue
            found.append(Entry(record, path, checkpoint if _regular(checkpoint) else None))
        return found

    def records(self, stage: str | None = None) -> list[Record]:
        return [e.record for e in self.entries() if stage is None or e.record.stage == stage]

    # --- writing ----------------------------------------------------------------------------
    def save_record(self, record: Record) -> None:
        # 0600: inputs hold keyed hashes of secrets, facts may name hosts.
        write_atomic(self.record_path(record.stage, record.key), record.to_json(), mode=0o600)

    def touch(self, stage: str, key: str) -> None:
        """Mark a checkpoint used now, for least-recently-used collection: the record's mtime is
        its last use (atime would move on every read of the record under relatime)."""
        with contextlib.suppress(OSError):
            os.utime(self.record_path(stage, key), follow_symlinks=False)

    def delete(self, entry: Entry) -> None:
        """Remove an entry: the record first (without it the checkpoint is no longer an entry)."""
        stage, key = entry.record.stage, entry.record.key
        self.record_path(stage, key).unlink(missing_ok=True)
        self.checkpoint(stage, key).unlink(missing_ok=True)
        for suffix in (".lock", ".use"):
            (self.locks / f"{stage}-{key}{suffix}").unlink(missing_ok=True)

    def publish_checkpoint(self, tmp: Path, stage: str, key: str, digest: str | None = None) -> str:
        """Give a finished checkpoint its name; returns its digest (computed unless given),
        which its record, saved next, must carry. A record of an earlier checkpoint of this
        name goes first, so a record never names bytes other than its file's, even after a
        crash; what was built on those earlier bytes goes too."""
        digest = digest or file_sha256(tmp)
        self.record_path(stage, key).unlink(missing_ok=True)
        for name in self.drop_descendants(key):
            log.warning("dropped %s: it was built on an earlier checkpoint of this name", name)
        publish_file(tmp, self.checkpoint(stage, key))
        return digest

    def drop_descendants(self, key: str) -> list[str]:
        """Delete every entry built on `key`: a stage rebuilt under a key it had before (its
        record lost) gets a checkpoint with other bytes, and what was backed by the old one
        would read garbage."""
        all_entries = self.entries()
        below = {key}
        dropped: list[str] = []
        for _ in range(len(STAGE_KINDS)):
            layer = [e for e in all_entries if e.record.parent in below and e.record.key not in below]
            if not layer:
                break
            for entry in layer:
                self.delete(entry)
                below.add(entry.record.key)
                dropped.append(entry.name)
        return dropped

    # --- locks ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, stage: str, key: str) -> Iterator[None]:
        """One builder per key: a second build of the same stage waits, then finds it cached."""
        self._check_name(stage, key)
        self.ensure()
        with _open_lock(self.locks / f"{stage}-{key}.lock") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def hold(self, entries: Sequence[tuple[str, str]]) -> None:
        """Mark these entries in use by this process until it exits: gc leaves them alone."""
        self.ensure()
        for stage, key in entries:
            self._check_name(stage, key)
            f = _open_lock(self.locks / f"{stage}-{key}.use")
            fcntl.flock(f, fcntl.LOCK_SH)
            self._held.append(f)

    @contextlib.contextmanager
    def unused(self, stage: str, key: str) -> Iterator[bool]:
        """Whether no build holds this entry; while the block runs, none can start holding it."""
        self._check_name(stage, key)
        with _open_lock(self.locks / f"{stage}-{key}.use") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)


def age_of(record: Record) -> float:
    return time.time() - record.created


def _link_problem(child: Record, parent: Record) -> str:
    return (
        f"{child.stage} was built over {parent.stage} bytes sha256:{child.parent_digest[:12] or '?'}, "
        f"but the cached {parent.stage} is sha256:{parent.digest[:12] or '?'}"
    )
