"""Cache collection deletes leaves, least recently used first, never a backing checkpoint nor one a
running build holds; and a cache folder full of junk is warned about, never a traceback, and
never makes the store touch anything outside it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vzstages.cache import manage
from vzstages.cache.store import Store
from vzstages.units import human_size

from ..conftest import REPO, fake_entry


def key(letter: str) -> str:
    return (letter * 32)[:32]


VOL, OSK, P1, P2 = key("a"), key("b"), key("c"), key("d")


def add(
    store: Store, stage: str, k: str, parent: tuple[str, str] | None, used: float, size: int = 4096
) -> None:
    fake_entry(store, stage, k, parent, created=used, size=size)
    os.utime(store.record_path(stage, k), (used, used))


def keys_left(store: Store) -> set[str]:
    return {r.key for r in store.records()}


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store(tmp_path / "cache")
    store.ensure()
    return store


def test_gc_by_size_takes_leaves_oldest_first_and_keeps_chains(store):
    old = time.time() - 10 * 86400
    add(store, "volume", VOL, None, old)
    add(store, "os", OSK, ("volume", VOL), old + 1)
    add(store, "packages", P1, ("os", OSK), old + 2)  # least recently used leaf
    add(store, "packages", P2, ("os", OSK), old + 3)
    total = sum(e.size for e in store.entries())
    deleted = manage.collect(store, max_size=total - 1, max_age=None)
    assert deleted[0].startswith(f"packages-{P1}")
    assert keys_left(store) == {VOL, OSK, P2}
    manage.collect(store, max_size=0, max_age=None)
    assert keys_left(store) == set()
    assert not list(store.stages.glob("*.qcow2"))


def test_gc_never_deletes_a_parent_before_its_children(store):
    now = time.time()
    add(store, "volume", VOL, None, now - 30 * 86400)  # oldest, but backs the others
    add(store, "os", OSK, ("volume", VOL), now - 86400)
    assert manage.collect(store, max_size=None, max_age=7 * 86400) == []
    assert keys_left(store) == {VOL, OSK}


def test_gc_skips_what_a_running_build_holds(store, tmp_path):
    now = time.time()
    add(store, "volume", VOL, None, now - 9 * 86400)
    add(store, "os", OSK, ("volume", VOL), now - 8 * 86400)
    add(store, "os", P1, ("volume", VOL), now - 8 * 86400)
    # Another process holds the chain volume -> os OSK, as a build does while it runs.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from vzstages.cache.store import Store;"
            f"s = Store(Path({str(store.root)!r})); s.hold([('volume', {VOL!r}), ('os', {OSK!r})]);"
            "print('held', flush=True); time.sleep(60)",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        deleted = manage.collect(store, max_size=0, max_age=None)
        assert [d.split(" ")[0] for d in deleted] == [f"os-{P1}"]
        assert keys_left(store) == {VOL, OSK}
    finally:
        holder.kill()
        holder.wait()
    manage.collect(store, max_size=0, max_age=None)
    assert keys_left(store) == set()


def test_gc_by_age(store):
    now = time.time()
    add(store, "volume", VOL, None, now - 9 * 86400)
    add(store, "os", OSK, ("volume", VOL), now - 8 * 86400)
    add(store, "os", P1, ("volume", VOL), now - 60)
    assert manage.collect(store, max_size=None, max_age=7 * 86400, dry_run=True) == [
        f"os-{OSK} ({human_size(4096)})"
    ]
    assert keys_left(store) == {VOL, OSK, P1}
    manage.collect(store, max_size=None, max_age=7 * 86400)
    assert keys_left(store) == {VOL, P1}


def test_ls_shows_chains(store):
    add(store, "volume", VOL, None, time.time())
    add(store, "os", OSK, ("volume", VOL), time.time())
    lines = manage.list_lines(store)
    assert lines[1].startswith("volume-aaaaaaaaaaaa")
    assert lines[2].startswith("  os-bbbbbbbbbbbb")
    assert lines[-1].startswith("2 entries")


JUNK = {
    "a JSON list": "[1, 2]",
    "an int key": json.dumps({"stage": "os", "key": 5}),
    "a dict parent": json.dumps({"stage": "os", "key": OSK, "parent": {"a": 1}, "parent_stage": "volume"}),
    "a string created": json.dumps({"stage": "os", "key": OSK, "parent": None, "created": "yesterday"}),
    "not JSON": "{{{{",
    "binary": b"\xff\xfe\x00junk",
    "a stage that climbs out": json.dumps(
        {"stage": "../../../../x/precious", "key": OSK, "parent": None, "parent_stage": None}
    ),
}


@pytest.mark.parametrize("what", sorted(JUNK))
def test_malformed_records_are_skipped_with_a_warning(store, tmp_path, what):
    outside = tmp_path / "x"
    outside.mkdir()
    (outside / "precious.qcow2").write_text("keep me")
    (outside / "precious.lock").write_text("keep me too")
    add(store, "volume", VOL, None, time.time() - 86400)
    content = JUNK[what]
    path = store.record_path("os", OSK)
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    assert manage.list_lines(store)[-1].startswith("1 entries")
    assert manage.collect(store, max_size=0, max_age=None) == [f"volume-{VOL} ({human_size(4096)})"]
    assert [n for n, ok, _ in manage.verify(store)] == []
    assert any(str(path) in w for w in store.warnings)
    assert (outside / "precious.qcow2").read_text() == "keep me"
    assert (outside / "precious.lock").read_text() == "keep me too"
    assert path.exists()  # not ours to delete: it is not a record


def test_a_folder_where_a_checkpoint_should_be_is_skipped(store):
    add(store, "volume", VOL, None, time.time())
    store.checkpoint("volume", VOL).unlink()
    store.checkpoint("volume", VOL).mkdir()
    assert manage.list_lines(store)[-1].startswith("0 entries")
    assert store.lookup("volume", VOL, disk=True) is None


def test_a_checkpoint_backed_by_a_host_file_is_no_hit(store):
    from ..conftest import fake_checkpoint

    add(store, "volume", VOL, None, time.time())
    add(store, "os", OSK, ("volume", VOL), time.time())
    assert store.hit("os", OSK, disk=True, outputs=[], touch=False) is not None
    fake_checkpoint(store.checkpoint("os", OSK), "/etc/shadow")
    assert store.hit("os", OSK, disk=True, outputs=[], touch=False) is None
    assert any("/etc/shadow" in w for w in store.warnings)
    [(_, ok, detail)] = [r for r in manage.verify(store) if r[0].startswith("os-")]
    assert not ok and "/etc/shadow" in detail


def test_a_cache_that_is_not_a_folder_is_a_clear_error(tmp_path):
    from vzstages.errors import VzError

    with pytest.raises(VzError, match="cannot be used"):
        Store(Path("/dev/null")).ensure()
    (tmp_path / "file").write_text("")
    with pytest.raises(VzError, match="not a folder"):
        Store(tmp_path / "file").check_usable()


def test_records_are_private(store):
    add(store, "volume", VOL, None, time.time())
    assert store.record_path("volume", VOL).stat().st_mode & 0o777 == 0o600


def test_rebuilding_a_stage_under_a_known_key_drops_what_was_built_on_it(store):
    add(store, "volume", VOL, None, time.time())
    add(store, "os", OSK, ("volume", VOL), time.time())
    add(store, "packages", P1, ("os", OSK), time.time())
    assert store.drop_descendants(VOL) == [f"os-{OSK}", f"packages-{P1}"]
    assert keys_left(store) == {VOL}


def test_a_checkpoint_over_other_parent_bytes_is_no_hit_and_verify_says_why(store):
    add(store, "volume", VOL, None, time.time())
    add(store, "os", OSK, ("volume", VOL), time.time())
    assert store.hit("os", OSK, disk=True, outputs=[], touch=False) is not None
    # The parent rebuilt under its key (other bytes): its old child must not be stacked on it.
    record = store.lookup("volume", VOL, disk=True)
    assert record is not None
    record.digest = "f" * 64
    store.save_record(record)
    assert store.hit("os", OSK, disk=True, outputs=[], touch=False) is None
    problem = store.chain_problem(store.lookup("os", OSK, disk=True))
    assert problem is not None and "sha256:ffffffffffff" in problem
    results = {name[:3]: (ok, detail) for name, ok, detail in manage.verify(store)}
    assert not results["os-"][0] and "built over volume bytes" in results["os-"][1]
    assert not results["vol"][0] and "sha256 differs" in results["vol"][1]


def test_a_record_without_digests_is_no_hit(store):
    from ..conftest import fake_entry

    fake_entry(store, "volume", VOL, None, digest="")
    assert store.hit("volume", VOL, disk=True, outputs=[], touch=False) is None


def test_a_deeply_nested_record_is_skipped_with_a_warning(store):
    add(store, "volume", VOL, None, time.time())
    store.record_path("os", OSK).write_text("[" * 100_000)
    assert [e.record.key for e in store.entries()] == [VOL]
    assert store.lookup("os", OSK, disk=False) is None
    assert any("nested deeper" in w for w in store.warnings), store.warnings
    assert manage.list_lines(store)[-1].startswith("1 entries")
