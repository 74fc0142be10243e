"""Pulling one chain from the remote: every blob downloaded at once, then published parents first.

A fresh machine on a warm remote pulls five or six checkpoints, one of which holds most of the
bytes; fetched one after another, the small ones waited behind the big one and the network
waited behind the disk. Here each blob streams, unpacks and is checked on its own thread, and
the publishing (backing file, `qemu-img check`, the parent's very bytes) stays in chain order,
so a checkpoint still goes into the store only once what it is backed by is there.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from ..host import qemu_img_check
from ..units import human_size
from . import qcow2
from .record import Record
from .remote_record import RemoteError, RemoteRecord
from .transfer import NotZstd, TooLarge, decompress

if TYPE_CHECKING:
    from .remote import Remote

log = logging.getLogger("vzstages.progress")

# Blobs of one chain downloaded at once: a chain is five or six, and S3 serves each stream at
# a fraction of what a host can take.
PARALLEL_PULLS = 4


class ChainPull:
    def __init__(self, remote: Remote):
        self.remote = remote
        self.store = remote.store
        self.cancelled = threading.Event()  # the build is stopping: downloads end at their next chunk
        self.seconds: dict[str, float] = {}  # a fetched blob's download time, until it is published
        self.counting = threading.Lock()  # the remote's byte counter, added to from every download

    def run(self, records: list[RemoteRecord]) -> None:
        """Pull `records` (parents first). What follows a failed one is dropped: it would be
        stacked on nothing. Failures are the remote's warnings; this raises nothing of its own."""
        if not records:
            return
        with ThreadPoolExecutor(max_workers=PARALLEL_PULLS, thread_name_prefix="vzstages-pull") as pool:
            fetches = [pool.submit(self._fetch, record) for record in records]
            try:
                for record, fetch in zip(records, fetches, strict=True):
                    with self.remote.guarded(f"pulling {record.name}"):
                        self._publish(record, fetch.result())
            except RemoteError:
                pass
            finally:
                self.cancelled.set()
                for fetch in fetches:
                    _remove_unpublished(fetch)

    def _fetch(self, record: RemoteRecord) -> Path:
        """The record's blob, downloaded and unpacked beside the checkpoints, its digests checked."""
        tmp = self.store.temp_checkpoint(record.stage, record.key)
        started = time.monotonic()
        try:
            self._download(record, tmp)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self.seconds[record.name] = time.monotonic() - started
        return tmp

    def _download(self, record: RemoteRecord, target: Path) -> None:
        remote = self.remote

        def counted(size: int) -> None:
            if self.cancelled.is_set():
                raise RemoteError("cancelled")
            with self.counting:
                remote.counters.received += size

        seconds = remote.blob_deadline(record.size)
        with remote.objects.stream(remote.object_name("blobs", record.sha256), seconds) as body:
            try:
                got = decompress(body, target, record.size, record.raw_size, counted)
            except (TooLarge, NotZstd) as exc:
                raise RemoteError(f"blob of {record.name} {exc}") from None
        if got.sha256 != record.sha256 or got.size != record.size:
            raise RemoteError(f"blob of {record.name} does not match its digest (tampered or cut short)")
        if got.raw_sha256 != record.record.digest:
            raise RemoteError(f"blob of {record.name} unpacks to other bytes than its record names")
        if got.raw_size != record.raw_size:
            raise RemoteError(f"blob of {record.name} unpacks to {got.raw_size} bytes, not {record.raw_size}")

    def _publish(self, record: RemoteRecord, tmp: Path) -> None:
        """Publish a fetched checkpoint, exactly over the parent bytes it was built on."""
        store = self.store
        started = time.monotonic()
        expected_backing = None
        if record.parent and record.parent_stage:
            expected_backing = store.checkpoint(record.parent_stage, record.parent).name
        problem = qcow2.check_backing(tmp, expected_backing)
        if problem:
            raise RemoteError(f"blob of {record.name} is not the checkpoint it claims: {problem}")
        check = qemu_img_check(tmp)
        if check is not None:
            raise RemoteError(f"blob of {record.name} fails qemu-img check: {check}")
        below = None
        if record.parent and record.parent_stage:
            below = store.lookup(record.parent_stage, record.parent, disk=True)
        if expected_backing and (below is None or below.digest != record.record.parent_digest):
            raise RemoteError(f"{record.name} was built over other bytes than this cache's parent")
        if store.lookup(record.stage, record.key, disk=True) is not None:
            log.warning("%s: replacing this cache's copy with the remote's", record.name)
        store.publish_checkpoint(tmp, record.stage, record.key, record.record.digest)
        local = Record.from_document(record.record.document(), record.stage, record.key)
        # The signer is named in the image's provenance (evidence/writer.py).
        local.origin = {"remote": self.remote.config.url, "blob": record.sha256, "signer": record.signer}
        store.save_record(local)
        self.remote.counters.pulled.append(record.name)
        seconds = self.seconds.pop(record.name, 0.0) + time.monotonic() - started
        event = {"event": "pulled", "stage": record.stage, "key": record.key, "bytes": record.size}
        log.info(
            "%-8s pulled %s from the remote cache in %.1fs",
            record.stage,
            human_size(record.size),
            seconds,
            extra={"event": {**event, "seconds": round(seconds, 3)}},
        )


def _remove_unpublished(fetch: Future[Path]) -> None:
    """A fetched file that did not become a checkpoint (publishing renamed the others away)."""
    if fetch.exception() is None:
        fetch.result().unlink(missing_ok=True)
