"""A stage's changes written again by debugfs (volume/delta.py, volume/debugfs.py): the
filesystem it gives holds the stage's tree, passes e2fsck, and has the same bytes every time.

The parent is a folder written into an ext4 image by `mke2fs -d`; the stage's tree is a copy of
it changed the ways packages and maintainer scripts change a tree. No root is needed: mke2fs,
debugfs and e2fsck work on image files."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import subprocess
import time
from pathlib import Path

import pytest

from vzstages.volume import debugfs, delta

EPOCH = 1700000000
pytestmark = pytest.mark.skipif(shutil.which("debugfs") is None, reason="needs e2fsprogs (debugfs)")


def write(path: Path, text: str, mtime: int = 1600000000) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.utime(path, (mtime, mtime))


def parent_tree(root: Path) -> None:
    write(root / "etc/hostname", "one\n")
    write(root / "etc/same", "unchanged\n")
    write(root / "usr/bin/tool", "#!/bin/sh\n")
    (root / "usr/bin/tool").chmod(0o755)
    write(root / "usr/share/doc/a/copyright", "a\n")
    write(root / "usr/share/doc/b/copyright", "b\n")
    write(root / "var/lib/linked", "both\n")
    os.link(root / "var/lib/linked", root / "var/lib/linked2")
    write(root / "old/dir/file", "moved away\n")
    (root / "etc/alternative").symlink_to("/usr/bin/tool")
    write(root / "becomes-folder", "a file first\n")


def change(root: Path) -> None:
    """What a stage does: edit, add, remove, rename, relink, chmod, xattrs."""
    write(root / "etc/hostname", "two\n")
    write(root / "etc/same", "unchanged\n")  # rewritten with the same content and time
    write(root / "etc/new file with spaces", "new\n", mtime=EPOCH)
    (root / "usr/bin/tool").chmod(0o4755)
    shutil.rmtree(root / "usr/share/doc/b")
    (root / "old").rename(root / "renamed")
    (root / "var/lib/linked2").unlink()
    os.link(root / "etc/hostname", root / "etc/hostname.link")
    (root / "etc/alternative").unlink()
    (root / "etc/alternative").symlink_to("/etc/hostname")
    (root / "becomes-folder").unlink()
    write(root / "becomes-folder/inside", "x\n")
    os.setxattr(root / "usr/bin/tool", "user.note", b"\x00binary\xff")
    os.mkfifo(root / "fifo")
    big = root / "usr/lib/big"
    big.parent.mkdir(parents=True)
    big.write_bytes(os.urandom(300_000))
    os.utime(big, ns=(1600000000_123456789, 1600000000_123456789))
    still(root)


def described(root: Path) -> dict[str, tuple[object, ...]]:
    """What rdump gives back of each path: type, content, link target."""
    out: dict[str, tuple[object, ...]] = {}
    for path in sorted(root.rglob("*")):
        if path.name != "lost+found" and not path.is_fifo():  # rdump leaves fifos out
            st = path.lstat()
            content = hashlib.sha256(path.read_bytes()).hexdigest() if stat.S_ISREG(st.st_mode) else None
            target = os.readlink(path) if path.is_symlink() else None
            out[str(path.relative_to(root))] = (stat.S_IFMT(st.st_mode), content, target)
    return out


def inode(image: Path, path: str) -> tuple[object, ...]:
    """What debugfs says of a path's inode: mode, owner, mtime (seconds and extra), links, xattrs."""
    text = subprocess.run(
        ["debugfs", "-R", f'stat "/{path}"', str(image)], capture_output=True, text=True
    ).stdout
    fields = dict(re.findall(r"(Mode|User|Group|Links):\s+(\S+)", text))
    mtime = re.search(r" mtime: (0x[0-9a-f]+):([0-9a-f]+)", text)
    assert mtime, text
    xattrs = re.findall(r"^  (\S+) \(\d+\)", text, re.M)
    return int(fields["Mode"], 8), int(fields["User"]), int(mtime[1], 16), int(mtime[2], 16) >> 2, xattrs


def stat_of(root: Path, path: str) -> tuple[object, ...]:
    st = (root / path).lstat()
    xattrs = [] if stat.S_ISLNK(st.st_mode) else sorted(os.listxattr(root / path))
    return stat.S_IMODE(st.st_mode), st.st_uid, st.st_mtime_ns // 10**9, st.st_mtime_ns % 10**9, xattrs


def image_of(tree: Path, image: Path) -> None:
    env = {**os.environ, "E2FSPROGS_FAKE_TIME": str(EPOCH)}
    subprocess.run(
        ["mke2fs", "-q", "-F", "-t", "ext4", "-U", "11111111-2222-3333-4444-555555555555",
         "-E", "hash_seed=11111111-2222-3333-4444-555555555555", "-d", str(tree), str(image), "16M"],
        check=True, env=env,
    )  # fmt: skip


def still(root: Path) -> None:
    for path in [root, *root.rglob("*")]:  # listed first: following a symlink moves its atime
        st = path.lstat()
        os.utime(path, ns=(st.st_mtime_ns, st.st_mtime_ns), follow_symlinks=False)


def script_of(tmp: Path, parent: Path, tree: Path, since_ns: int) -> bytes:
    trees = delta.Trees(os.fsencode(parent), os.fsencode(tree))
    new = delta.scan(str(tree), since_ns)
    values = tmp / "values"
    values.mkdir(exist_ok=True)
    script = debugfs.script(trees, delta.changes(trees, new), new, os.fsencode(values), EPOCH)
    for file, value in script.values.items():
        (values / file).write_bytes(value)
    return b"".join(line + b"\n" for line in script.lines)


def run(tmp: Path, script: bytes, image: Path) -> None:
    (tmp / "script").write_bytes(script)
    done = subprocess.run(
        ["debugfs", "-w", "-f", str(tmp / "script"), str(image)],
        capture_output=True, text=True, env={**os.environ, "E2FSPROGS_FAKE_TIME": str(EPOCH)},
    )  # fmt: skip
    errors = [line for line in done.stderr.splitlines() if not line.startswith("debugfs ")]
    assert done.returncode == 0 and not errors, errors


@pytest.fixture
def trees(tmp_path: Path) -> tuple[Path, Path, int]:
    parent, tree = tmp_path / "parent", tmp_path / "tree"
    parent_tree(parent)
    subprocess.run(["cp", "-a", str(parent), str(tree)], check=True)
    time.sleep(0.05)
    since = time.time_ns()
    time.sleep(0.05)
    change(tree)
    still(tree)
    return parent, tree, since


def test_the_written_filesystem_holds_the_stage_tree_and_passes_fsck(tmp_path, trees):
    parent, tree, since = trees
    image = tmp_path / "one.img"
    image_of(parent, image)
    run(tmp_path, script_of(tmp_path, parent, tree, since), image)
    fsck = subprocess.run(["e2fsck", "-fn", str(image)], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(["debugfs", "-R", f"rdump / {out}", str(image)], check=True, capture_output=True)
    assert described(out) == described(tree)
    for path in ("usr/bin/tool", "usr/lib/big", "etc/hostname", "etc/new file with spaces", "fifo"):
        assert (
            inode(image, path)[:3] + inode(image, path)[4:]
            == stat_of(tree, path)[:2] + stat_of(tree, path)[2:3] + stat_of(tree, path)[4:]
        ), path
    assert inode(image, "usr/lib/big")[3] == 123456789
    links = subprocess.run(
        ["debugfs", "-R", "stat /etc/hostname.link", str(image)], capture_output=True, text=True
    )
    assert "Links: 2" in links.stdout


def test_only_what_changed_is_written(tmp_path, trees):
    parent, tree, since = trees
    pair = delta.Trees(os.fsencode(parent), os.fsencode(tree))
    found = delta.changes(pair, delta.scan(str(tree), since))
    made = {b"/".join(p).decode() for p in found.made}
    gone = {b"/".join(p).decode() for p, _ in found.gone}
    assert "etc/same" not in made and "etc/same" in {b"/".join(p).decode() for p in found.updated}
    assert {"etc/hostname", "etc/hostname.link", "renamed", "renamed/dir", "renamed/dir/file"} <= made
    assert "usr/share/doc/a/copyright" not in made | gone
    assert {"usr/share/doc/b", "usr/share/doc/b/copyright", "old", "old/dir/file", "becomes-folder"} <= gone
    assert "var/lib/linked" in made and "var/lib/linked2" in gone  # one link left: made again alone


def test_the_same_trees_give_the_same_bytes(tmp_path, trees):
    parent, tree, since = trees
    images = [tmp_path / "one.img", tmp_path / "two.img"]
    for image in images:
        image_of(parent, image)
    script = script_of(tmp_path, parent, tree, since)
    still(tree)  # as a read-only mount is: reading left no access time
    assert script_of(tmp_path, parent, tree, since) == script  # a function of the two trees
    for image in images:
        run(tmp_path, script, image)
    one, two = (image.read_bytes() for image in images)
    assert one == two


def test_a_name_debugfs_cannot_take_keeps_the_kernels_bytes(tmp_path, trees):
    parent, tree, since = trees
    write(tree / 'etc/a "quoted" name', "x\n")
    pair = delta.Trees(os.fsencode(parent), os.fsencode(tree))
    new = delta.scan(str(tree), since)
    with pytest.raises(delta.Unwritable, match="cannot be given"):
        debugfs.script(pair, delta.changes(pair, new), new, b"/values", EPOCH)
