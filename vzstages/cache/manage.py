"""`vzstages cache ls | gc | verify`: look after a checkpoint store.

Checkpoints form chains (each qcow2 is backed by its parent's), so collection only ever deletes
leaves, least recently used first, and never a checkpoint another one is backed by, nor one a
running build holds (Store.hold). Every path it deletes is one the store derived from a valid
stage and key (Store.delete): a record's content never names what gets deleted.
"""

from __future__ import annotations

import time
from pathlib import Path

from ..host import qemu_img_check
from ..units import human_age, human_size
from . import chains, qcow2
from .chains import Link, walk
from .record import file_sha256
from .store import Entry, Store


def _links(store: Store) -> list[Link[Entry]]:
    return [
        Link(e.record.key, e.record.parent, e.size, e.record.created, e.last_used, e) for e in store.entries()
    ]


def list_lines(store: Store) -> list[str]:
    links = _links(store)
    now = time.time()
    lines = [f"{'stage':<30}{'size':>10}{'age':>7}{'used':>7}  manifest"]
    for depth, link in walk(links):
        entry = link.item
        label = "  " * depth + f"{entry.record.stage}-{entry.record.key[:12]}"
        lines.append(
            f"{label:<30}{human_size(entry.size):>10}{human_age(now - entry.record.created):>7}"
            f"{human_age(now - entry.last_used):>7}  {Path(entry.record.manifest).name}"
        )
    total = sum(link.size for link in links)
    lines.append(f"{len(links)} entries, {human_size(total)} allocated in {store.stages}")
    return lines


def collect(store: Store, max_size: int | None, max_age: float | None, dry_run: bool = False) -> list[str]:
    """Delete leaves, oldest use first (chains.py). An entry a running build holds is skipped,
    and so is everything it is backed by."""

    def delete(victim: Link[Entry], remaining: list[Link[Entry]]) -> bool:
        entry = victim.item
        with store.unused(entry.record.stage, entry.record.key) as unused:
            if unused and not dry_run:
                with store.lock(entry.record.stage, entry.record.key):
                    store.delete(entry)
            return unused

    deleted = chains.collect(_links(store), time.time(), max_size, max_age, delete)
    return [f"{link.item.name} ({human_size(link.size)})" for link in deleted]


def verify(store: Store) -> list[tuple[str, bool, str]]:
    """Check every checkpoint: its bytes are those its record names, it was built over exactly
    its parent's bytes, its header names exactly its parent as backing file (checked before
    qemu opens anything), its parent's record is there, and `qemu-img check` passes."""
    results = []
    all_entries = store.entries()
    keys = {e.record.key: e for e in all_entries}
    for entry in all_entries:
        if entry.checkpoint is None:
            continue
        problems = []
        parent = keys.get(entry.record.parent) if entry.record.parent else None
        if entry.record.parent and parent is None:
            problems.append(
                f"parent record {entry.record.parent_stage}-{entry.record.parent[:12]} is missing"
            )
        elif parent is not None and entry.record.parent_digest != parent.record.digest:
            problems.append(
                f"built over {parent.record.stage} bytes sha256:{entry.record.parent_digest[:12] or '?'}, "
                f"not the cached sha256:{parent.record.digest[:12] or '?'}"
            )
        if file_sha256(entry.checkpoint) != entry.record.digest:
            problems.append("its bytes are not those its record names (sha256 differs)")
        expected = parent.checkpoint.name if parent and parent.checkpoint else None
        backing = qcow2.check_backing(entry.checkpoint, expected)
        if backing:
            problems.append(backing)
        elif not problems:
            check = qemu_img_check(entry.checkpoint)
            if check is not None:
                problems.append(check)
        results.append((entry.name, not problems, "; ".join(problems) or "ok"))
    return results
