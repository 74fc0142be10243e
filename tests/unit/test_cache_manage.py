"""Cache collection deletes leaves, least recently used first, and never a backing checkpoint."""

from __future__ import annotations

import os
import time

from vzstages.cache import manage
from vzstages.cache.store import Record, Store


def add(store: Store, stage: str, key: str, parent: str | None, used: float, size: int = 4096) -> None:
    store.checkpoint(stage, key).write_bytes(b"x" * size)
    store.save_record(Record(stage, key, parent, None, {}, created=used))
    os.utime(store.record_path(stage, key), (used, used))


def keys_left(store: Store) -> set[str]:
    return {r.key for r in store.records()}


def test_gc_by_size_takes_leaves_oldest_first_and_keeps_chains(tmp_path):
    store = Store(tmp_path)
    store.ensure()
    old = time.time() - 10 * 86400
    add(store, "volume", "v", None, old)
    add(store, "os", "o", "v", old + 1)
    add(store, "packages", "p1", "o", old + 2)  # least recently used leaf
    add(store, "packages", "p2", "o", old + 3)
    total = sum(e.size for e in manage.entries(store))
    deleted = manage.collect(store, max_size=total - 1, max_age=None)
    assert deleted[0].startswith("packages-p1")
    assert keys_left(store) == {"v", "o", "p2"}
    manage.collect(store, max_size=0, max_age=None)
    assert keys_left(store) == set()
    assert not list(store.stages.glob("*.qcow2"))


def test_gc_never_deletes_a_parent_before_its_children(tmp_path):
    store = Store(tmp_path)
    store.ensure()
    now = time.time()
    add(store, "volume", "v", None, now - 30 * 86400)  # oldest, but backs the others
    add(store, "os", "o", "v", now - 86400)
    deleted = manage.collect(store, max_size=None, max_age=7 * 86400)
    assert deleted == []
    assert keys_left(store) == {"v", "o"}


def test_gc_by_age_and_grace_for_entries_in_use(tmp_path):
    store = Store(tmp_path)
    store.ensure()
    now = time.time()
    add(store, "volume", "v", None, now - 9 * 86400)
    add(store, "os", "stale", "v", now - 8 * 86400)
    add(store, "os", "fresh", "v", now - 60)  # just used: may be backing a running build
    assert manage.collect(store, max_size=0, max_age=None, dry_run=True) == [
        f"os-stale ({manage.human(4096)})"
    ]
    assert keys_left(store) == {"v", "stale", "fresh"}
    manage.collect(store, max_size=None, max_age=7 * 86400)
    assert keys_left(store) == {"v", "fresh"}


def test_ls_shows_chains(tmp_path):
    store = Store(tmp_path)
    store.ensure()
    add(store, "volume", "v" * 32, None, time.time())
    add(store, "os", "o" * 32, "v" * 32, time.time())
    lines = manage.list_lines(store)
    assert lines[1].startswith("volume-vvvvvvvvvvvv")
    assert lines[2].startswith("  os-oooooooooooo")
    assert lines[-1].startswith("2 entries")


def test_size_and_age_parsing():
    assert manage.parse_size("20G") == 20 * 1024**3
    assert manage.parse_size("500MiB") == 500 * 1024**2
    assert manage.parse_age("7d") == 7 * 86400
    assert manage.parse_age("12h") == 43200
