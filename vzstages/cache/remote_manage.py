"""`vzstages cache ls|gc --remote-only` and `cache push|pull`: look after the remote cache and warm
a cache by hand (a CI job that pushes what a laptop built, a runner that pulls before going
offline)."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Sequence
from pathlib import Path

from ..errors import VzError
from ..units import human_age, human_size
from . import chains
from .chains import Link, walk
from .record import KEY, STAGE_NAMES, Record, valid_entry
from .remote import Remote
from .remote_record import RemoteError, RemoteRecord
from .store import Store

_RECORD = re.compile(r"(?P<stage>[a-z]+)-(?P<key>[0-9a-f]{32})\.json", re.ASCII)


def scan(remote: Remote) -> tuple[list[tuple[RemoteRecord, float]], list[tuple[str, float]]]:
    """Every record on the remote: those that verify (with when each was written), and the
    names of those that do not (junk, damaged, signed by no trusted key). VzError if the
    remote cannot be listed; a record that cannot be read now is neither (it is skipped)."""
    valid: list[tuple[RemoteRecord, float]] = []
    junk: list[tuple[str, float]] = []
    for name, modified in listing(remote, "records"):
        match = _RECORD.fullmatch(name)
        if not match or not valid_entry(match["stage"], match["key"]):
            junk.append((name, modified))
            continue
        failures = remote.failures
        record = remote.lookup(match["stage"], match["key"])
        if remote.unreachable:
            why = remote.warnings[-1] if remote.warnings else "unreachable"
            raise VzError(f"remote cache {remote.config.url}: {why}")
        if record is not None:
            valid.append((record, modified))
        elif remote.failures == failures:  # it was read, and it does not verify
            junk.append((name, modified))
    return valid, junk


def entries_of(remote: Remote) -> list[tuple[RemoteRecord, float]]:
    """Every trustworthy record on the remote, with when it was last written."""
    return scan(remote)[0]


def listing(remote: Remote, kind: str) -> list[tuple[str, float]]:
    """(name, last written) of every object under `kind/`; VzError if the remote cannot say."""
    try:
        with remote.guarded(f"listing {kind}"):
            return list(remote.objects.listing(kind))
    except RemoteError as exc:
        raise VzError(f"remote cache {remote.config.url}: cannot list it ({exc})") from None


def delete_object(remote: Remote, kind: str, name: str) -> None:
    with contextlib.suppress(RemoteError), remote.guarded(f"deleting {kind}/{name}"):
        remote.objects.delete(remote.object_name(kind, name))


def delete_entry(remote: Remote, record: RemoteRecord, blob_in_use: bool) -> None:
    """Record first: without it the blob is no longer an entry."""
    remote.objects.delete(remote.object_name("records", f"{record.name}.json"))
    if not blob_in_use:
        remote.objects.delete(remote.object_name("blobs", record.sha256))


def list_lines(remote: Remote) -> list[str]:
    entries = entries_of(remote)
    now = time.time()
    lines = [f"{'stage':<30}{'blob':>10}{'unpacked':>10}{'age':>7}  signed"]
    for depth, link in walk(_links(entries)):
        record = link.item
        label = "  " * depth + f"{record.stage}-{record.key[:12]}"
        lines.append(
            f"{label:<30}{human_size(record.size):>10}{human_size(record.raw_size):>10}"
            f"{human_age(now - link.used):>7}  {record.signer[-16:] or 'no'}"
        )
    total = sum(r.size for r, _ in entries)
    lines.append(f"{len(entries)} entries, {human_size(total)} in {remote.config.url}")
    lines += remote.warnings
    return lines


def _links(entries: Sequence[tuple[RemoteRecord, float]]) -> list[Link[RemoteRecord]]:
    """A remote record's age is its object's: when it was pushed is when it was last made use of."""
    return [Link(r.key, r.parent, r.size, modified, modified, r) for r, modified in entries]


# A blob no record names is an orphan once it is this old (younger: a push still under way).
ORPHAN_AGE = 3600.0


def collect(remote: Remote, max_size: int | None, max_age: float | None, dry_run: bool = False) -> list[str]:
    """As local gc: leaves first, oldest first, chains kept whole; a blob goes with the last
    record that names it. First, what does not verify goes (records, then blobs no valid record
    names), so one junk object cannot hold a bucket; a parent a valid child names stays."""
    if not remote.config.can_write:
        raise VzError(
            f"cache gc --remote deletes from the remote: not with --remote-mode {remote.config.mode}"
        )
    remaining, junk = scan(remote)
    now = time.time()
    deleted: list[str] = []
    if not dry_run:
        with contextlib.suppress(RemoteError), remote.guarded("sweeping unfinished uploads"):
            swept = remote.objects.sweep(ORPHAN_AGE)
            deleted += [f"{swept} unfinished upload(s) of a writer that died"] if swept else []
    for name, _ in junk:
        if not dry_run:
            delete_object(remote, "records", name)
        deleted.append(f"records/{name} (does not verify)")
    named = {r.sha256 for r, _ in remaining}
    for name, modified in listing(remote, "blobs"):
        if name not in named and now - modified > ORPHAN_AGE:
            if not dry_run:
                delete_object(remote, "blobs", name)
            deleted.append(f"blobs/{name[:16]}... (no valid record names it)")

    def delete(victim: Link[RemoteRecord], remaining: list[Link[RemoteRecord]]) -> bool:
        record = victim.item
        if not dry_run:
            delete_entry(remote, record, blob_in_use=any(x.item.sha256 == record.sha256 for x in remaining))
        return True

    gone = chains.collect(_links(remaining), now, max_size, max_age, delete)
    return deleted + [f"{link.item.name} ({human_size(link.size)})" for link in gone]


def _plans(targets: Sequence[str], cache: str) -> list[tuple[str, str]]:
    from ..build import load_plans

    return [(s.name, s.key) for plan in load_plans(targets, cache) for s in plan.stages if s.disk]


def local_entries(store: Store, targets: Sequence[str], cache: str) -> list[Record]:
    """What `cache push` sends: the disk entries of these manifests' plans, or every local one;
    parents before children, so a pull never finds a child without its parent."""
    wanted = set(_plans(targets, cache)) if targets else None
    present = [r for r in store.records() if store.lookup(r.stage, r.key, disk=True) is not None]
    records = [r for r in present if wanted is None or (r.stage, r.key) in wanted]
    order = ["volume", "os", "packages", "system", "user", "cleanup"]
    return sorted(records, key=lambda r: order.index(r.stage) if r.stage in order else len(order))


def push(remote: Remote, records: Sequence[Record]) -> list[str]:
    return [f"{r.stage}-{r.key}" for r in records if remote.push(r.stage, r.key)]


def pull(remote: Remote, targets: Sequence[str], cache: str) -> list[str]:
    """Pull entries (and their missing parents): STAGE-KEY, a key (or a prefix of one, as `cache
    ls` shows it), or manifests (every disk stage of their plans)."""
    wanted: list[tuple[str, str]] = []
    manifests = [t for t in targets if Path(t).exists() or t.endswith((".yml", ".yaml", ".json"))]
    if manifests:
        wanted += _plans(manifests, cache)
    for target in (t for t in targets if t not in manifests):
        wanted += _resolve_key(remote, target)
    before = len(remote.counters.pulled)
    for stage, key in wanted:
        if remote.store.lookup(stage, key, disk=True) is None:
            record = remote.lookup(stage, key)
            if record is None:
                continue
            parent = (record.parent_stage, record.parent) if record.parent and record.parent_stage else None
            remote.pull(stage, key, parent, held=False)
    return remote.counters.pulled[before:]


def _resolve_key(remote: Remote, target: str) -> list[tuple[str, str]]:
    stage, _, key = target.rpartition("-")
    if stage in STAGE_NAMES and KEY.fullmatch(key):
        return [(stage, key)]
    prefix = target.split("-")[-1]
    matches = [(r.stage, r.key) for r, _ in entries_of(remote) if r.key.startswith(prefix)]
    if len(matches) != 1:
        raise VzError(f"{target!r} names {len(matches)} remote entries; give more of the key")
    return matches
