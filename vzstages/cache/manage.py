"""`vzstages cache ls | gc | verify`: look after a checkpoint store.

Checkpoints form chains (each qcow2 is backed by its parent's), so collection only ever deletes
leaves, least recently used first, and never a checkpoint another one is backed by.
"""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .store import Record, Store

# A checkpoint used this recently may be the parent of a stage being built right now.
IN_USE_GRACE = 600.0

_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([KMGT]?)(i?B)?$", re.IGNORECASE)
_AGE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")


def parse_size(text: str) -> int:
    match = _SIZE.match(text.strip())
    if not match:
        raise ValueError(f"not a size: {text!r} (use e.g. 20G or 500MiB)")
    return int(float(match.group(1)) * 1024 ** "BKMGT".index((match.group(2) or "B").upper()))


def parse_age(text: str) -> float:
    match = _AGE.match(text.strip())
    if not match:
        raise ValueError(f"not an age: {text!r} (use e.g. 30m, 12h, 7d, 2w)")
    return float(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[match.group(2)]


@dataclass
class Entry:
    record: Record
    record_path: Path
    checkpoint: Path | None

    @property
    def size(self) -> int:
        if self.checkpoint is None or not self.checkpoint.exists():
            return 0
        return self.checkpoint.stat().st_blocks * 512

    @property
    def last_used(self) -> float:
        return self.record_path.stat().st_mtime

    @property
    def name(self) -> str:
        return f"{self.record.stage}-{self.record.key}"


def entries(store: Store) -> list[Entry]:
    found = []
    for record in store.records():
        checkpoint = store.checkpoint(record.stage, record.key)
        found.append(
            Entry(
                record,
                store.record_path(record.stage, record.key),
                checkpoint if checkpoint.exists() else None,
            )
        )
    return found


def children(all_entries: list[Entry]) -> dict[str, list[Entry]]:
    by_parent: dict[str, list[Entry]] = {}
    for entry in all_entries:
        if entry.record.parent:
            by_parent.setdefault(entry.record.parent, []).append(entry)
    return by_parent


def human(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.0f}{unit}" if unit == "B" else f"{size:.1f}{unit}"
        size /= 1024
    return f"{size:.1f}TiB"


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def list_lines(store: Store) -> list[str]:
    all_entries = entries(store)
    kids = children(all_entries)
    now = time.time()
    lines = [f"{'stage':<30}{'size':>10}{'age':>7}{'used':>7}  manifest"]

    def show(entry: Entry, depth: int) -> None:
        label = "  " * depth + f"{entry.record.stage}-{entry.record.key[:12]}"
        lines.append(
            f"{label:<30}{human(entry.size):>10}{_age(now - entry.record.created):>7}"
            f"{_age(now - entry.last_used):>7}  {Path(entry.record.manifest).name}"
        )
        for child in sorted(kids.get(entry.record.key, []), key=lambda e: e.record.created):
            show(child, depth + 1)

    keys = {e.record.key for e in all_entries}
    for root in sorted(
        (e for e in all_entries if e.record.parent not in keys), key=lambda e: e.record.created
    ):
        show(root, 0)
    total = sum(e.size for e in all_entries)
    lines.append(f"{len(all_entries)} entries, {human(total)} allocated in {store.stages}")
    return lines


def collect(store: Store, max_size: int | None, max_age: float | None, dry_run: bool = False) -> list[str]:
    """Delete leaves, oldest use first: those unused for max_age, then more until under max_size."""
    deleted: list[str] = []
    now = time.time()
    remaining = entries(store)
    while True:
        kids = children(remaining)
        leaves = [e for e in remaining if not kids.get(e.record.key) and now - e.last_used > IN_USE_GRACE]
        leaves.sort(key=lambda e: e.last_used)
        total = sum(e.size for e in remaining)
        victim = next((e for e in leaves if max_age is not None and now - e.last_used > max_age), None)
        if victim is None and max_size is not None and total > max_size and leaves:
            victim = leaves[0]
        if victim is None:
            return deleted
        if not dry_run:
            with store.lock(victim.record.stage, victim.record.key):
                # The record goes first: without it the checkpoint is no longer a cache entry.
                victim.record_path.unlink(missing_ok=True)
                if victim.checkpoint:
                    victim.checkpoint.unlink(missing_ok=True)
        deleted.append(f"{victim.name} ({human(victim.size)})")
        remaining.remove(victim)


def verify(store: Store) -> list[tuple[str, bool, str]]:
    """qemu-img check every checkpoint and make sure its whole backing chain is there."""
    results = []
    keys = {e.record.key: e for e in entries(store)}
    for entry in keys.values():
        if entry.checkpoint is None:
            continue
        problems = []
        check = subprocess.run(
            ["qemu-img", "check", "-q", str(entry.checkpoint)], capture_output=True, text=True
        )
        if check.returncode != 0:
            problems.append(
                (check.stdout + check.stderr).strip() or f"qemu-img check exit {check.returncode}"
            )
        chain = subprocess.run(
            ["qemu-img", "info", "--backing-chain", "-U", str(entry.checkpoint)],
            capture_output=True,
            text=True,
        )
        if chain.returncode != 0:
            problems.append("backing chain broken: " + chain.stderr.strip())
        parent = entry.record.parent
        if parent and parent not in keys:
            problems.append(f"parent record {entry.record.parent_stage}-{parent[:12]} is missing")
        results.append((entry.name, not problems, "; ".join(problems) or "ok"))
    return results
