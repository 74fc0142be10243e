"""`vzstages cache ls|gc --remote-only` and `cache push|pull`: look after the remote cache and warm
a cache by hand (a CI job that pushes what a laptop built, a runner that pulls before going
offline)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from ..errors import VzError
from ..units import human_age, human_size
from . import chains
from .chains import Link, walk
from .record import KEY, STAGE_NAMES, Record
from .remote import Remote
from .remote_record import RemoteRecord
from .store import Store


def list_lines(remote: Remote) -> list[str]:
    entries = remote.entries()
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
    remaining, junk = remote.scan()
    now = time.time()
    deleted: list[str] = []
    for name, _ in junk:
        if not dry_run:
            remote.delete_object("records", name)
        deleted.append(f"records/{name} (does not verify)")
    named = {r.sha256 for r, _ in remaining}
    for name, modified in remote.blobs():
        if name not in named and now - modified > ORPHAN_AGE:
            if not dry_run:
                remote.delete_object("blobs", name)
            deleted.append(f"blobs/{name[:16]}... (no valid record names it)")

    def delete(victim: Link[RemoteRecord], remaining: list[Link[RemoteRecord]]) -> bool:
        record = victim.item
        if not dry_run:
            remote.delete(record, blob_in_use=any(x.item.sha256 == record.sha256 for x in remaining))
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
    matches = [(r.stage, r.key) for r, _ in remote.entries() if r.key.startswith(prefix)]
    if len(matches) != 1:
        raise VzError(f"{target!r} names {len(matches)} remote entries; give more of the key")
    return matches
