"""A shared remote cache in S3 (or any S3-compatible store): CI runners and engineers build each
stage once between them.

Layout under s3://BUCKET/PREFIX/:

    blobs/<sha256>                 a checkpoint, zstd-compressed; named by the sha256 of its bytes
    records/<stage>-<key>.json     what the blob is: its digest and sizes, the parent's key, the
                                   local record (facts ...), the format version, and optionally an
                                   ed25519 signature by the pushing host
    archive/<digest of URL>.json   the newest state of an archive suite any host has seen (its
                                   InRelease digest and when it was fetched), so that all hosts
                                   compute the same keys for the stages that download

Push: blob first, record last, nothing uploaded that is already there; so a push cut short
leaves at most a blob without a record, which no pull takes for a hit.

Pull: the store is untrusted. A record must parse field by field, name the stage, key and parent
that were asked for, and (with trusted keys configured) carry a valid signature by one of them,
else it is a miss with a warning. Its blob is streamed through sha256 and decompressed into a
temporary file beside the checkpoints, with the declared sizes as caps; its qcow2 header must name
exactly the parent's checkpoint as backing file, and `qemu-img check` must pass. Only then is it
published into the local store, exactly as a local build publishes a stage.

The remote is an accelerator: any failure (unreachable, a timeout, a tampered object) is a
warning, and the build goes on locally.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..runid import run_id
from ..units import human_size
from .backends import Backend, open_backend
from .record import MAX_RECORD_BYTES, Record, valid_entry
from .remote_config import RemoteConfig
from .remote_pull import ChainPull
from .remote_record import (
    _ARCHIVE_NAME,
    FORMAT,
    MAX_ARCHIVE_STATE_BYTES,
    RemoteError,
    RemoteRecord,
    parse_archive_state,
)
from .signing import load_signing_key, load_trusted_keys, seal
from .store import Store
from .transfer import DeadlineExceeded, compress

log = logging.getLogger("vzstages.progress")

# A remote that fails this often in one run is left alone for the rest of it.
MAX_FAILURES = 3
# Deadlines for a whole object: a small one, and a blob at no less than this rate.
SMALL_OBJECT_SECONDS = 30.0
MIN_RATE = 1 << 20


@dataclass
class Counters:
    sent: int = 0
    received: int = 0
    pushed: list[str] = field(default_factory=list)
    pulled: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"remote cache: pulled {len(self.pulled)} ({human_size(self.received)}), "
            f"pushed {len(self.pushed)} ({human_size(self.sent)})"
        )


# --- the remote ---------------------------------------------------------------------------------


class Remote:
    def __init__(self, config: RemoteConfig, store: Store):
        self.config = config
        self.store = store
        self.counters = Counters()
        self.warnings: list[str] = []
        self.objects: Backend = open_backend(config)
        self._trusted = load_trusted_keys(config.trusted_keys) if config.trusted_keys else None
        self._signing = load_signing_key(config.signing_key) if config.signing_key else None
        self._records: dict[str, RemoteRecord | None] = {}
        self.unreachable = False
        self.failures = 0

    # --- plumbing ---
    @staticmethod
    def object_name(kind: str, name: str) -> str:
        return f"{kind}/{name}"

    def warn(self, message: str) -> None:
        text = f"warning: remote cache: {message}"
        if text not in self.warnings:
            self.warnings.append(text)
            log.warning("%s", text)

    @contextlib.contextmanager
    def guarded(self, what: str) -> Iterator[None]:
        """Turn any failure of the remote into a warning; the caller carries on locally."""
        try:
            yield
        except (OSError, ValueError) as exc:  # BackendError is an OSError; ValueError: a junk answer
            self._failed(exc)
            self.warn(f"{what} failed ({exc}); building locally")
            raise RemoteError(str(exc)) from None
        except RemoteError as exc:
            self.warn(f"{what}: {exc}")
            raise

    def _failed(self, exc: BaseException) -> None:
        """Count a failure of the remote itself; after a few (or one it cannot answer at all)
        it is left alone for the rest of the run, with one warning."""
        gone = isinstance(exc, DeadlineExceeded) or getattr(exc, "unreachable", False)
        self.failures += 1
        if not self.unreachable and (gone or self.failures >= MAX_FAILURES):
            self.unreachable = True
            self.warn(f"{self.config.url} is not answering; going on without it for this run")

    def pulled_this_run(self, stage: str, key: str) -> bool:
        return f"{stage}-{key}" in self.counters.pulled

    @staticmethod
    def blob_deadline(size: int) -> float:
        """Seconds a blob of `size` bytes may take, whole: no less than MIN_RATE."""
        return SMALL_OBJECT_SECONDS + size / MIN_RATE

    def _exists(self, kind: str, name: str) -> bool:
        return self.objects.exists(self.object_name(kind, name))

    # --- reading ---
    def lookup(self, stage: str, key: str) -> RemoteRecord | None:
        """The remote's record for this entry, if there is one that can be trusted."""
        name = f"{stage}-{key}"
        if name in self._records:
            return self._records[name]
        found: RemoteRecord | None = None
        if self.config.can_read and not self.unreachable and valid_entry(stage, key):
            with contextlib.suppress(RemoteError), self.guarded(f"looking up {name}"):
                found = self._fetch_record(stage, key)
        self._records[name] = found
        return found

    def _read_small(self, key: str, limit: int) -> bytes | None:
        """A small object (a record, an archive state), read to at most limit + 1 bytes so the
        caller can tell one that is too big; None if there is no such object."""
        return self.objects.read_small(key, limit, SMALL_OBJECT_SECONDS)

    def _fetch_record(self, stage: str, key: str) -> RemoteRecord | None:
        raw = self._read_small(self.object_name("records", f"{stage}-{key}.json"), MAX_RECORD_BYTES)
        if raw is None:
            return None
        if len(raw) > MAX_RECORD_BYTES:
            raise RemoteError(f"record {stage}-{key} is larger than a record can be")
        self.counters.received += len(raw)
        return RemoteRecord.parse(raw, stage, key, self._trusted)

    def chain(self, stage: str, key: str) -> list[RemoteRecord] | None:
        """The remote records needed to have this entry locally, the entry's own first and its
        ancestors after it, up to the first one this cache holds with the very bytes the
        remote's chain was built over; None if the remote has no whole chain for it.

        The remote's chain wins: a local ancestor with other bytes (built here while another
        host built and pushed the same key) is replaced by the remote's, with what was built
        on it, so hosts converge on one chain and never stack an overlay on other bytes."""
        needed: list[RemoteRecord] = []
        current: tuple[str, str] | None = (stage, key)
        wanted = ""  # the digest the entry below was built over
        while current is not None:
            if wanted and self._have(current, wanted):
                return needed
            record = self.lookup(*current)
            if record is None:
                return None
            if wanted and record.record.digest != wanted:
                below = needed[-1]
                self.warn(
                    f"{below.name} was built over {record.stage} bytes sha256:{wanted[:12]}, but the "
                    f"remote's {record.name} is sha256:{record.record.digest[:12]}: no whole chain; a miss"
                )
                return None
            needed.append(record)
            if len(needed) > 16:
                return None  # no real chain is this long
            wanted = record.record.parent_digest
            current = (record.parent_stage, record.parent) if record.parent and record.parent_stage else None
        return needed

    def _have(self, entry: tuple[str, str], digest: str) -> bool:
        """This cache holds the entry with exactly these bytes, on a sound chain."""
        local = self.store.lookup(*entry, disk=True)
        return local is not None and local.digest == digest and self.store.chain_problem(local) is None

    def pull_size(self, stage: str, key: str) -> int | None:
        needed = self.chain(stage, key)
        return None if needed is None else sum(r.size for r in needed)

    def pull(
        self,
        stage: str,
        key: str,
        parent: tuple[str, str] | None,
        held: bool = True,
        ahead: Sequence[tuple[str, str]] = (),
    ) -> bool:
        """Bring the entry (and its missing ancestors) into the local store; False on a miss.
        `held`: the caller holds the entry's build lock (the others are locked here). `ahead`:
        the entries the caller will want next, built on this one, deepest last: the deepest the
        remote has a whole chain for comes down with it, every blob at once."""
        if not self.config.can_read or self.unreachable:
            return False
        needed = self._chain_through((stage, key), ahead)
        if not needed:
            return False
        own = next(r for r in needed if (r.stage, r.key) == (stage, key))
        if (own.parent_stage, own.parent) != (parent or (None, None)):
            self.warn(f"{own.name} names parent {own.parent_stage}-{own.parent}, not the plan's; a miss")
            return False
        order = list(reversed(needed))  # parents first: locked, then published, in this order
        with contextlib.ExitStack() as locks:
            for record in order:
                if not (held and record is own):
                    locks.enter_context(self.store.lock(record.stage, record.key))
            ChainPull(self).run([r for r in order if not self._have((r.stage, r.key), r.record.digest)])
        return self._have((stage, key), own.record.digest)

    def _chain_through(
        self, entry: tuple[str, str], ahead: Sequence[tuple[str, str]]
    ) -> list[RemoteRecord] | None:
        """The longest remote chain that holds `entry`: through the deepest of `ahead` the remote
        has whole, else the entry's own."""
        for top in reversed(ahead):
            needed = self.chain(*top)
            if needed and any((r.stage, r.key) == entry for r in needed):
                return needed
        return self.chain(*entry)

    # --- writing ---
    def push(self, stage: str, key: str) -> bool:
        """Push a local entry: blob first, record last; nothing that is already there."""
        if not self.config.can_write or self.unreachable:
            return False
        local = self.store.lookup(stage, key, disk=True)
        if local is None or local.origin or self.store.chain_problem(local):
            return False  # not here (whole), or pulled from a remote (which has it)
        name = f"{stage}-{key}"
        try:
            with self.guarded(f"pushing {name}"):
                there = self._exists("records", f"{name}.json")
                if there and self._valid_record_there(stage, key):
                    return False
                if not self._parent_matches(local):
                    return False
                return self._push_one(local, replace=there)
        except RemoteError:
            return False

    def _valid_record_there(self, stage: str, key: str) -> bool:
        """Whether the remote has a record for this entry that verifies. One that does not
        (junk, damaged, signed by no trusted key) is replaced by a valid push, so one bad
        object never blocks a stage for good."""
        name = f"{stage}-{key}"
        try:
            found = self._fetch_record(stage, key)
        except RemoteError as exc:
            self.warn(f"replacing {name}: the remote's record does not verify ({exc})")
            return False
        self._records[name] = found
        return found is not None

    def _parent_matches(self, local: Record) -> bool:
        """The remote holds consistent chains only: an entry goes up only over a remote parent
        with the very bytes it was built over (another host may have pushed that key first)."""
        if local.parent is None or local.parent_stage is None:
            return True
        self._records.pop(f"{local.parent_stage}-{local.parent}", None)  # it may have been pushed since
        parent = self.lookup(local.parent_stage, local.parent)
        if parent is not None and parent.record.digest == local.parent_digest:
            return True
        self.warn(
            f"{local.stage}-{local.key[:12]} not pushed: it was built over a {local.parent_stage} "
            "that is not the remote's (another host pushed that key first; hosts converge on its chain)"
        )
        return False

    def _push_one(self, local: Record, replace: bool) -> bool:
        store = self.store
        checkpoint = store.checkpoint(local.stage, local.key)
        blob = store.stages / f".push-{local.stage}-{local.key}.{run_id()}.zst"
        started = time.monotonic()
        try:
            sha, size, raw_size = compress(checkpoint, blob)
            if not self._exists("blobs", sha):
                self.objects.upload(self.object_name("blobs", sha), blob)
                self.counters.sent += size
        finally:
            blob.unlink(missing_ok=True)
        remote = RemoteRecord(
            local.stage, local.key, local.parent, local.parent_stage, sha, size, raw_size, local, time.time()
        )
        body = seal(json.dumps(remote.document(), sort_keys=True, indent=1).encode(), self._signing)
        record_name = self.object_name("records", f"{remote.name}.json")
        if replace:  # a record that does not verify: a valid one takes its place
            self.objects.put(record_name, body)
        elif not self.objects.create(record_name, body):
            log.info(
                "%-8s another host pushed %s first; the remote keeps its entry", local.stage, remote.name
            )
            return False
        self.counters.sent += len(body)
        self.counters.pushed.append(remote.name)
        self._records[remote.name] = remote
        seconds = time.monotonic() - started
        event = {"event": "pushed", "stage": local.stage, "key": local.key, "bytes": size}
        log.info(
            "%-8s pushed %s to the remote cache in %.1fs",
            local.stage,
            human_size(size),
            seconds,
            extra={"event": {**event, "seconds": round(seconds, 3)}},
        )
        return True

    # --- the archive's state, shared ---
    def archive_state(self, name: str) -> dict[str, Any] | None:
        """The newest state of one archive suite (`name`: the digest of its URL) that a host
        published, as {"url", "fetched", "digest"}; None if there is none that can be trusted."""
        if not self.config.can_read or self.unreachable or not _ARCHIVE_NAME.fullmatch(name):
            return None
        try:
            with self.guarded(f"reading the archive state {name}"):
                raw = self._read_small(self.object_name("archive", f"{name}.json"), MAX_ARCHIVE_STATE_BYTES)
                return None if raw is None else parse_archive_state(raw, self._trusted)
        except RemoteError:
            return None

    def publish_archive_state(self, name: str, state: dict[str, Any]) -> None:
        if not self.config.can_write or self.unreachable or not _ARCHIVE_NAME.fullmatch(name):
            return
        body = seal(json.dumps({"format": FORMAT, **state}, sort_keys=True).encode(), self._signing)
        with contextlib.suppress(RemoteError), self.guarded(f"publishing the archive state {name}"):
            self.objects.put(self.object_name("archive", f"{name}.json"), body)
