"""Base trees: what mmdebstrap left, kept beside the package cache and unpacked by a later build."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from vzstages.common.base_trees import KEPT, BaseTrees, tree_key
from vzstages.errors import VzError
from vzstages.host import Host


def _tree(root: Path) -> None:
    (root / "usr/bin").mkdir(parents=True)
    (root / "var/lost+found").mkdir(parents=True)
    (root / "lost+found").mkdir()
    tool = root / "usr/bin/tool"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o4755)
    os.link(tool, root / "usr/bin/tool-again")
    (root / "usr/bin/link").symlink_to("tool")
    os.setxattr(tool, "user.vzstages", b"kept")


def _listing(root: Path) -> dict[str, tuple[int, int, int, str]]:
    seen = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        target = os.readlink(path) if path.is_symlink() else ""
        links = 0 if path.is_dir() else st.st_nlink  # a folder's count includes lost+found
        seen[str(path.relative_to(root))] = (st.st_mode, st.st_gid, links, target)
    return seen


def test_a_saved_tree_unpacks_whole_without_the_filesystems_own_lost_and_found(tmp_path):
    source, target = tmp_path / "source", tmp_path / "target"
    _tree(source)
    target.mkdir()
    trees = BaseTrees(tmp_path / "trees", Host())
    key = tree_key({"release": "bookworm"})
    assert not trees.restore(key, target)  # nothing kept yet: a miss
    trees.save(key, source, ["/", "/var"])
    assert trees.restore(key, target)
    expected = {k: v for k, v in _listing(source).items() if not k.endswith("lost+found")}
    assert _listing(target) == expected
    assert os.getxattr(target / "usr/bin/tool", "user.vzstages") == b"kept"
    assert (target / "usr/bin/tool").stat().st_ino == (target / "usr/bin/tool-again").stat().st_ino


def test_a_tree_is_named_by_all_that_shaped_it():
    one = tree_key({"release": "bookworm", "archive": "a" * 64})
    assert one == tree_key({"archive": "a" * 64, "release": "bookworm"})
    assert one != tree_key({"release": "bookworm", "archive": "b" * 64})


@pytest.mark.parametrize(
    "damage",
    [
        lambda tar, record: record.write_text("[" * 100_000),
        lambda tar, record: record.write_text('{"size": "big"}'),
        lambda tar, record: record.unlink(),
        lambda tar, record: tar.unlink(),
        lambda tar, record: os.truncate(tar, tar.stat().st_size // 2),
    ],
    ids=["junk record", "wrong size type", "no record", "no tree", "truncated tree"],
)
def test_a_tree_that_is_not_whole_is_a_miss(tmp_path, damage):
    source, target = tmp_path / "source", tmp_path / "target"
    _tree(source)
    target.mkdir()
    trees = BaseTrees(tmp_path / "trees", Host())
    trees.save("k" * 32, source, ["/"])
    damage(tmp_path / "trees" / f"{'k' * 32}.tar", tmp_path / "trees" / f"{'k' * 32}.json")
    assert not trees.restore("k" * 32, target)
    assert list(target.iterdir()) == []


def test_a_tree_tar_cannot_read_is_removed_and_the_stage_stops(tmp_path):
    """The root then holds part of a tree: mmdebstrap must not run over it."""
    source, target = tmp_path / "source", tmp_path / "target"
    _tree(source)
    target.mkdir()
    trees = BaseTrees(tmp_path / "trees", Host())
    trees.save("k" * 32, source, ["/"])
    tar = tmp_path / "trees" / f"{'k' * 32}.tar"
    size = tar.stat().st_size
    tar.write_bytes(b"\0garbage" * (size // 8) + b"\0" * (size % 8))
    with pytest.raises(VzError, match="could not be unpacked"):
        trees.restore("k" * 32, target)
    assert not tar.exists()


def test_only_the_most_recently_used_trees_are_kept(tmp_path):
    source, target = tmp_path / "source", tmp_path / "target"
    _tree(source)
    target.mkdir()
    trees = BaseTrees(tmp_path / "trees", Host())
    keys = [f"{i:032d}" for i in range(KEPT)]
    for age, key in zip(range(KEPT, 0, -1), keys, strict=True):
        trees.save(key, source, ["/"])
        then = time.time() - 100 * age
        os.utime(tmp_path / "trees" / f"{key}.json", (then, then))
    assert trees.restore(keys[0], target)  # the oldest, used again
    trees.save("z" * 32, source, ["/"])
    kept = {p.stem for p in (tmp_path / "trees").glob("*.json")}
    assert kept == {keys[0], *keys[2:], "z" * 32}
    assert {p.stem for p in (tmp_path / "trees").glob("*.tar")} == kept
