"""What a stage changed in one ext2/3/4 filesystem, as a debugfs script that makes the same
change on the parent checkpoint's bytes.

A stage runs on the kernel's ext4, which places blocks by timing, CPU and pid: two builds of one
key leave the same tree in different bytes. Written again through libext2fs (debugfs), whose
allocator depends only on the filesystem it starts from and the commands it is given, the same
parent and the same tree give the same bytes. The commands come in one order (paths sorted),
so the script is a function of the two trees alone.

Only what changed is written: an entry whose inode change time is older than the stage's start
is the parent's (any change to an inode moves its ctime), and a changed regular file whose
content and metadata equal the parent's is left as it was.
"""

from __future__ import annotations

import array
import fcntl
import os
import stat
from dataclasses import dataclass, field
from typing import BinaryIO

from ..errors import VzError

Path = tuple[bytes, ...]  # components below the filesystem's root

# Inode flags libext2fs sets itself (extents, an indexed folder); any other (immutable,
# append-only, nodump ...) is one a stage chose, and debugfs would not carry it over.
FS_IOC_GETFLAGS = 0x80086601
OWN_FLAGS = 0x00080000 | 0x00001000
CHUNK = 1 << 20
TIME_LIMIT = 2**31  # debugfs's `@seconds` takes a 32-bit time


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


@dataclass
class Script:
    lines: list[bytes] = field(default_factory=list)
    values: dict[str, bytes] = field(default_factory=dict)  # xattr values, by file name

    def add(self, *words: bytes) -> None:
        self.lines.append(b" ".join(words))


def scan(root: str, since_ns: int | None = None) -> dict[Path, Entry]:
    """Every entry below a mounted filesystem's root, without following a symlink."""
    found: dict[Path, Entry] = {}
    top = os.fsencode(root)
    found[()] = _entry(os.stat(top, follow_symlinks=False), since_ns)
    for folder, dirs, files, fd in os.fwalk(top, follow_symlinks=False):
        base = tuple(p for p in os.path.relpath(folder, top).split(b"/") if p != b".")
        for name in (*dirs, *files):
            found[(*base, name)] = _entry(os.stat(name, dir_fd=fd, follow_symlinks=False), since_ns)
    return found


def _entry(st: os.stat_result, since_ns: int | None) -> Entry:
    fresh = since_ns is not None and st.st_ctime_ns >= since_ns
    return Entry(
        st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns, st.st_atime_ns,
        st.st_rdev, st.st_nlink, st.st_ino, fresh,
    )  # fmt: skip


def script(
    parent_root: str, tree_root: str, old: dict[Path, Entry], new: dict[Path, Entry], values: str, epoch: int
) -> Script:
    """The commands that turn the parent's filesystem into the tree's, for a debugfs whose
    clock is `epoch` (E2FSPROGS_FAKE_TIME). `values` is the folder the xattr value files will be
    written to (their names are in the script)."""
    out = Script()
    trees = _Trees(os.fsencode(parent_root), os.fsencode(tree_root), os.fsencode(values), epoch * 10**9)
    replaced = {p for p, e in new.items() if p in old and e.fresh and _replaced(trees, p, old[p], e)}
    gone = sorted((p for p in old if p not in new or p in replaced), reverse=True)
    for path in gone:
        out.add(b"rmdir" if stat.S_ISDIR(old[path].mode) else b"rm", _quote(path))
    made: dict[int, Path] = {}  # a new inode's first path, for its other links
    for path in sorted(new):
        entry = new[path]
        if path in old and path not in replaced:
            if entry.fresh and not stat.S_ISDIR(entry.mode):
                trees.metadata(out, path, old[path], entry)
        else:
            trees.make(out, path, entry, made)
    # A folder's metadata last, once everything below it is made.
    for path in sorted(p for p, e in new.items() if stat.S_ISDIR(e.mode)):
        if path not in old or path in replaced:
            trees.metadata(out, path, None, new[path])
        elif new[path].fresh:
            trees.metadata(out, path, old[path], new[path])
    return out


def _replaced(trees: _Trees, path: Path, old: Entry, new: Entry) -> bool:
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


def _made_mode(mode: int) -> int:
    """The mode debugfs gives what it makes: a file its source's permissions without the set-id
    and sticky bits, a folder 0755, a symlink 0777; a device or fifo gets its mode set always."""
    kind = stat.S_IFMT(mode)
    return {stat.S_IFREG: kind | (mode & 0o777), stat.S_IFDIR: kind | 0o755, stat.S_IFLNK: kind | 0o777}.get(
        kind, -1
    )


def _quote(path: Path) -> bytes:
    return _quote_bytes(b"/" + b"/".join(path))


def _quote_bytes(text: bytes) -> bytes:
    # debugfs reads one command a line and takes a quoted word whole; nothing escapes a quote.
    if any(c in text for c in (b'"', b"\n", b"\r", b"\0")):
        raise Unwritable(f"a name debugfs cannot be given: {text!r}")
    return b'"' + text + b'"'


def _time(ns: int) -> tuple[bytes, int]:
    seconds, rest = divmod(ns, 1_000_000_000)
    if not 0 <= seconds < TIME_LIMIT:
        raise Unwritable(f"a time debugfs cannot write: {seconds}")
    return b"@%d" % seconds, rest


@dataclass
class _Trees:
    parent: bytes
    tree: bytes
    values: bytes
    now_ns: int  # what debugfs gives a new entry's times

    def full(self, root: bytes, path: Path) -> bytes:
        return b"/".join((root, *path))

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
        return os.fdopen(os.open(self.full(root, path), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK), "rb")

    def flags(self, path: Path, mode: int) -> int:
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            return 0
        fd = os.open(self.full(self.tree, path), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        try:
            flags = array.array("i", [0])
            fcntl.ioctl(fd, FS_IOC_GETFLAGS, flags)
            return flags[0] & 0xFFFFFFFF
        finally:
            os.close(fd)

    def make(self, out: Script, path: Path, entry: Entry, made: dict[int, Path]) -> None:
        kind, name = stat.S_IFMT(entry.mode), _quote(path)
        if kind == stat.S_IFREG and entry.nlink > 1 and entry.ino in made:
            out.add(b"ln", _quote(made[entry.ino]), name)
            return
        if kind == stat.S_IFDIR:
            out.add(b"mkdir", name)
            return  # its metadata once all below it is made
        if kind == stat.S_IFREG:
            out.add(b"write", _quote_bytes(self.full(self.tree, path)), name)
            if entry.nlink > 1:
                made[entry.ino] = path
                out.add(b"sif", name, b"links_count", b"%d" % entry.nlink)
        elif kind == stat.S_IFLNK:
            out.add(b"symlink", name, _quote_bytes(self.link(self.tree, path)))
        elif kind in (stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO):
            # debugfs's mknod links its argument whole into the current folder, slashes and all.
            out.add(b"cd", _quote(path[:-1]))
            node = [b"p"] if kind == stat.S_IFIFO else [b"c" if kind == stat.S_IFCHR else b"b"]
            if kind != stat.S_IFIFO:
                node += [b"%d" % os.major(entry.rdev), b"%d" % os.minor(entry.rdev)]
            out.add(b"mknod", _quote_bytes(path[-1]), *node)
            out.add(b"cd", b"/")
        else:
            raise Unwritable(f"a socket: {path!r}")
        self.metadata(out, path, None, entry)

    def metadata(self, out: Script, path: Path, old: Entry | None, new: Entry) -> None:
        """What of the entry's metadata differs from the parent's, or from what debugfs gives a
        new entry: root's, the permissions below, its clock's time."""
        name = _quote(path)
        if self.flags(path, new.mode) & ~OWN_FLAGS:
            raise Unwritable(f"inode flags debugfs does not set, on {path!r}")
        before = old or Entry(_made_mode(new.mode), 0, 0, 0, self.now_ns, self.now_ns, 0, 1, 0, False)
        if new.mode != before.mode:
            out.add(b"sif", name, b"mode", b"0%o" % new.mode)
        for field_name, value, was in ((b"uid", new.uid, before.uid), (b"gid", new.gid, before.gid)):
            if value != was:
                out.add(b"sif", name, field_name, b"%d" % value)
        for field_name, ns, was in (
            (b"mtime", new.mtime_ns, before.mtime_ns),
            (b"atime", new.atime_ns, before.atime_ns),
        ):
            if ns != was:
                seconds, rest = _time(ns)
                out.add(b"sif", name, field_name, seconds)
                if rest or was % 10**9:
                    out.add(b"sif", name, field_name + b"_extra", b"%d" % (rest << 2))
        self.xattr_changes(out, path, old is not None)

    def xattr_changes(self, out: Script, path: Path, existed: bool) -> None:
        now = self.xattrs(self.tree, path)
        before = self.xattrs(self.parent, path) if existed else {}
        name = _quote(path)
        for key in sorted(set(before) - set(now)):
            out.add(b"ea_rm", name, _quote_bytes(key))
        for key, value in now.items():
            if before.get(key) != value:
                file = b"ea%d" % len(out.values)
                out.values[os.fsdecode(file)] = value
                out.add(b"ea_set", b"-f", _quote_bytes(self.values + b"/" + file), name, _quote_bytes(key))
