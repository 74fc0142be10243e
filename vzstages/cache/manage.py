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
from . import qcow2
from .record import STAGE_NAMES, file_sha256
from .store import Entry, Store


def children(all_entries: list[Entry]) -> dict[str, list[Entry]]:
    by_parent: dict[str, list[Entry]] = {}
    for entry in all_entries:
        if entry.record.parent:
            by_parent.setdefault(entry.record.parent, []).append(entry)
    return by_parent


def list_lines(store: Store) -> list[str]:
    all_entries = store.entries()
    kids = children(all_entries)
    now = time.time()
    lines = [f"{'stage':<30}{'size':>10}{'age':>7}{'used':>7}  manifest"]

    def show(entry: Entry, depth: int) -> None:
        label = "  " * depth + f"{entry.record.stage}-{entry.record.key[:12]}"
        lines.append(
            f"{label:<30}{human_size(entry.size):>10}{human_age(now - entry.record.created):>7}"
            f"{human_age(now - entry.last_used):>7}  {Path(entry.record.manifest).name}"
        )
        for child in sorted(kids.get(entry.record.key, []), key=lambda e: e.record.created):
            if depth < len(STAGE_NAMES):  # a record naming itself as its parent is no chain
                show(child, depth + 1)

    keys = {e.record.key for e in all_entries}
    for root in sorted(
        (e for e in all_entries if e.record.parent not in keys), key=lambda e: e.record.created
    ):
        show(root, 0)
    total = sum(e.size for e in all_entries)
    lines.append(f"{len(all_entries)} entries, {human_size(total)} allocated in {store.stages}")
    return lines


def collect(store: Store, max_size: int | None, max_age: float | None, dry_run: bool = False) -> list[str]:
    """Delete leaves, oldest use first: those unused for max_age, then more until under max_size.
    An entry a running build holds is skipped, and so is everything it is backed by."""
    deleted: list[str] = []
    now = time.time()
    remaining = store.entries()
    busy: set[str] = set()
    while True:
        kids = children(remaining)
        leaves = [e for e in remaining if not kids.get(e.record.key) and e.name not in busy]
        leaves.sort(key=lambda e: e.last_used)
        total = sum(e.size for e in remaining)
        victim = next((e for e in leaves if max_age is not None and now - e.last_used > max_age), None)
        if victim is None and max_size is not None and total > max_size and leaves:
            victim = leaves[0]
        if victim is None:
            return deleted
        size = victim.size
        with store.unused(victim.record.stage, victim.record.key) as unused:
            if not unused:
                busy.add(victim.name)
                continue
            if not dry_run:
                with store.lock(victim.record.stage, victim.record.key):
                    store.delete(victim)
        deleted.append(f"{victim.name} ({human_size(size)})")
        remaining.remove(victim)


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
