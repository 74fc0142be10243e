"""What a stage changed in one ext2/3/4 filesystem, found by comparing the tree it left with its
parent's tree.

Only what changed is looked at: any change to an inode (content, metadata, a link added or
removed, a rename) moves its change time, so an entry whose ctime is older than the stage's
start is the parent's, at the same path, unless a folder above it was made anew (a folder
renamed). A folder whose entries changed has a new ctime too, so only those folders are listed
in the parent to find what went. A changed regular file whose content and metadata equal the
parent's is left as it was.
"""

from __future__ import annotations

import os
import stat
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from ..errors import VzError

Path = tuple[bytes, ...]  # components below the filesystem's root; () is the root
CHUNK = 1 << 20


class Unwritable(Exception):
    """A change debugfs cannot write as the kernel made it: the filesystem keeps the kernel's
    bytes for this stage (correct, not reproducible)."""


class WriteFailed(VzError):
    """debugfs refused a command: the checkpoint is not published."""


@dataclass(frozen=True)
class Entry:
    mode: int
    uid: int
    gid: int
    size: int
    mtime_ns: int
    atime_ns: int
    rdev: int
    nlink: int
    ino: int
    fresh: bool  # changed during the stage


Scan = dict[Path, Entry]


@dataclass
class Changes:
    gone: list[tuple[Path, bool]] = field(
        default_factory=list
    )  # the parent's (path, is a folder), deepest first
    made: list[Path] = field(default_factory=list)  # the tree's, made anew, parents first
    updated: dict[Path, Entry] = field(default_factory=dict)  # kept, metadata compared with the parent's


def scan(root: str, since_ns: int | None = None) -> dict[Path, Entry]:
    """Every entry below a mounted filesystem's root."""
    top = os.fsencode(root)
    found: dict[Path, Entry] = {(): _entry(os.stat(top, follow_symlinks=False), since_ns)}
    for path, st in walk(top):
        found[path] = _entry(st, since_ns)
    return found


def walk(top: bytes, below: Path = ()) -> Iterator[tuple[Path, os.stat_result]]:
    """Every entry below `top`/`below`, with its lstat. No symlink is followed, not even to ask
    whether it leads to a folder (os.walk and os.fwalk do: it resolves the image's links on the
    build host)."""
    folders = [below]
    while folders:
        folder = folders.pop()
        with os.scandir(b"/".join((top, *folder))) as entries:
            for entry in entries:
                st = entry.stat(follow_symlinks=False)
                path = (*folder, entry.name)
                yield path, st
                if stat.S_ISDIR(st.st_mode):
                    folders.append(path)


def _entry(st: os.stat_result, since_ns: int | None) -> Entry:
    fresh = since_ns is not None and st.st_ctime_ns >= since_ns
    return Entry(
        st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns, st.st_atime_ns,
        st.st_rdev, st.st_nlink, st.st_ino, fresh,
    )  # fmt: skip


@dataclass
class Trees:
    """The parent's tree and the stage's, both mounted read-only."""

    parent: bytes
    tree: bytes

    def full(self, root: bytes, path: Path) -> bytes:
        return b"/".join((root, *path))

    def parent_entry(self, path: Path) -> Entry | None:
        try:
            return _entry(os.stat(self.full(self.parent, path), follow_symlinks=False), None)
        except FileNotFoundError:
            return None

    def parent_names(self, path: Path) -> list[bytes]:
        return os.listdir(self.full(self.parent, path))

    def parent_subtree(self, path: Path) -> list[tuple[Path, bool]]:
        """A folder of the parent's and all below it, as (path, is a folder)."""
        return [(path, True), *((p, stat.S_ISDIR(st.st_mode)) for p, st in walk(self.parent, path))]

    def link(self, root: bytes, path: Path) -> bytes:
        return os.readlink(self.full(root, path))

    def xattrs(self, root: bytes, path: Path) -> dict[bytes, bytes]:
        where = self.full(root, path)
        names = os.listxattr(where, follow_symlinks=False)
        return {os.fsencode(n): os.getxattr(where, n, follow_symlinks=False) for n in sorted(names)}

    def same_content(self, path: Path) -> bool:
        with self._open(self.parent, path) as a, self._open(self.tree, path) as b:
            while True:
                chunk = a.read(CHUNK)
                if chunk != b.read(CHUNK):
                    return False
                if not chunk:
                    return True

    def _open(self, root: bytes, path: Path) -> BinaryIO:
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOATIME
        return os.fdopen(os.open(self.full(root, path), flags), "rb")


def changes(trees: Trees, new: dict[Path, Entry]) -> Changes:
    """What must go from the parent's filesystem, what must be made in it, and which kept
    entries may have other metadata, for it to hold the stage's tree."""
    children: dict[Path, set[bytes]] = defaultdict(set)
    for path in new:
        if path:
            children[path[:-1]].add(path[-1])
    found = Changes()
    gone: set[Path] = set()
    made: set[Path] = set()
    for path in sorted(new):
        entry = new[path]
        if path and path[:-1] in made and stat.S_ISDIR(new[path[:-1]].mode):
            made.add(path)
            continue
        if not entry.fresh:
            continue
        before = trees.parent_entry(path)
        if before is None or _replaced(trees, path, before, entry):
            made.add(path)
            if before is not None:
                gone.add(path)
            continue
        found.updated[path] = before
        if stat.S_ISDIR(entry.mode):
            gone.update((*path, name) for name in trees.parent_names(path) if name not in children[path])
    _all_links_made(trees, new, made, gone, found.updated)
    found.made = sorted(made)
    removed: dict[Path, bool] = {}
    for path in gone:
        before = trees.parent_entry(path)
        if before is not None and stat.S_ISDIR(before.mode):
            removed.update(trees.parent_subtree(path))
        elif before is not None:
            removed[path] = False
    found.gone = sorted(removed.items(), reverse=True)
    return found


def _all_links_made(
    trees: Trees, new: dict[Path, Entry], made: set[Path], gone: set[Path], updated: dict[Path, Entry]
) -> None:
    """A file made anew with other links is made anew at all its links, so that they stay one
    inode (its other paths may be unchanged, below a renamed folder)."""
    linked: dict[int, list[Path]] = defaultdict(list)
    for path, entry in new.items():
        if entry.nlink > 1 and stat.S_ISREG(entry.mode):
            linked[entry.ino].append(path)
    for paths in linked.values():
        if not any(p in made for p in paths):
            continue
        for path in paths:
            if path not in made:
                made.add(path)
                updated.pop(path, None)
                if trees.parent_entry(path) is not None:
                    gone.add(path)


def _replaced(trees: Trees, path: Path, old: Entry, new: Entry) -> bool:
    """Must the parent's entry go and the tree's be made anew (not only its metadata set)?"""
    if stat.S_IFMT(old.mode) != stat.S_IFMT(new.mode):
        return True
    if stat.S_ISREG(new.mode):
        if new.nlink > 1 or old.nlink > 1:
            return True  # links regrouped: made again, all of them
        return old.size != new.size or not trees.same_content(path)
    if stat.S_ISLNK(new.mode):
        return trees.link(trees.parent, path) != trees.link(trees.tree, path)
    if stat.S_ISCHR(new.mode) or stat.S_ISBLK(new.mode):
        return old.rdev != new.rdev
    return False
