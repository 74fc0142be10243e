"""A stage's changes to one ext2/3/4 filesystem (delta.py) as a debugfs script.

libext2fs allocates blocks and inodes from the filesystem it starts from and the commands it is
given, in their order, with no clock but E2FSPROGS_FAKE_TIME: the same parent, the same tree
and this script give the same bytes. The script is a function of the two trees alone: removals
deepest first, then what is made in path order, then metadata, one folder at a time (a `cd`
first: debugfs finds a name by reading its folder, and a full path re-reads every folder above).
"""

from __future__ import annotations

import array
import fcntl
import os
import stat
from dataclasses import dataclass, field

from .delta import Changes, Entry, Path, Trees, Unwritable

# Inode flags libext2fs sets itself (extents, an indexed folder); any other (immutable,
# append-only, nodump ...) is one a stage chose, and debugfs would not carry it over.
FS_IOC_GETFLAGS = 0x80086601
OWN_FLAGS = 0x00080000 | 0x00001000
TIME_LIMIT = 2**31  # debugfs's `@seconds` takes a 32-bit time


@dataclass
class Script:
    lines: list[bytes] = field(default_factory=list)
    values: dict[str, bytes] = field(default_factory=dict)  # xattr values, by file name


def script(trees: Trees, changes: Changes, new: dict[Path, Entry], values: bytes, epoch: int) -> Script:
    """The commands, for a debugfs whose clock is `epoch`. `values` is the folder the xattr
    value files will be written to (their names are in the script)."""
    writer = _Writer(trees, new, values, epoch * 10**9)
    for path, folder in changes.gone:
        writer.out.lines.append(b"%s %s" % (b"rmdir" if folder else b"rm", _quote(path)))
    for path in changes.made:
        writer.make(path)
    for path in changes.made:
        if path not in writer.linked:
            writer.metadata(path, None)
    for path, before in changes.updated.items():
        writer.metadata(path, before)
    return writer.finish()


@dataclass
class _Writer:
    trees: Trees
    new: dict[Path, Entry]
    values: bytes
    now_ns: int  # the times debugfs gives what it makes
    out: Script = field(default_factory=Script)
    cwd: Path = ()
    first_link: dict[int, Path] = field(default_factory=dict)
    linked: set[Path] = field(default_factory=set)
    meta: dict[Path, list[bytes]] = field(default_factory=dict)

    def _in(self, folder: Path, *words: bytes) -> None:
        if folder != self.cwd:
            self.out.lines.append(b"cd " + _quote(folder))
            self.cwd = folder
        self.out.lines.append(b" ".join(words))

    def make(self, path: Path) -> None:
        entry, folder, name = self.new[path], path[:-1], _quote_bytes(path[-1])
        kind = stat.S_IFMT(entry.mode)
        if kind == stat.S_IFREG and entry.nlink > 1 and entry.ino in self.first_link:
            self._in(folder, b"ln", _quote(self.first_link[entry.ino]), name)
            self.linked.add(path)
        elif kind == stat.S_IFDIR:
            self._in(folder, b"mkdir", name)
        elif kind == stat.S_IFREG:
            self._in(folder, b"write", _quote_bytes(self.trees.full(self.trees.tree, path)), name)
            if entry.nlink > 1:
                self.first_link[entry.ino] = path
        elif kind == stat.S_IFLNK:
            self._in(folder, b"symlink", name, _quote_bytes(self.trees.link(self.trees.tree, path)))
        elif kind in (stat.S_IFCHR, stat.S_IFBLK):
            letter = b"c" if kind == stat.S_IFCHR else b"b"
            self._in(
                folder, b"mknod", name, letter, b"%d" % os.major(entry.rdev), b"%d" % os.minor(entry.rdev)
            )
        elif kind == stat.S_IFIFO:
            self._in(folder, b"mknod", name, b"p")
        else:
            raise Unwritable(f"a socket: {b'/'.join(path)!r}")

    def metadata(self, path: Path, old: Entry | None) -> None:
        """What of the entry's metadata differs from the parent's, or from what debugfs gives a
        new entry: root's, the permissions of _made_mode, its clock's time."""
        new = self.new[path]
        if self._flags(path, new.mode) & ~OWN_FLAGS:
            raise Unwritable(f"inode flags debugfs does not set, on {b'/'.join(path)!r}")
        before = old or Entry(_made_mode(new.mode), 0, 0, 0, self.now_ns, self.now_ns, 0, 1, 0, False)
        lines = self.meta.setdefault(path[:-1], [])
        name = _quote_bytes(path[-1]) if path else b'"/"'
        if old is None and new.nlink > 1 and stat.S_ISREG(new.mode):
            lines.append(b"sif %s links_count %d" % (name, new.nlink))
        if new.mode != before.mode:
            lines.append(b"sif %s mode 0%o" % (name, new.mode))
        for field_name, value, was in ((b"uid", new.uid, before.uid), (b"gid", new.gid, before.gid)):
            if value != was:
                lines.append(b"sif %s %s %d" % (name, field_name, value))
        for field_name, ns, was in (
            (b"mtime", new.mtime_ns, before.mtime_ns),
            (b"atime", new.atime_ns, before.atime_ns),
        ):
            if ns != was:
                seconds, rest = divmod(ns, 10**9)
                if not 0 <= seconds < TIME_LIMIT:
                    raise Unwritable(f"a time debugfs cannot write: {seconds}")
                lines.append(b"sif %s %s @%d" % (name, field_name, seconds))
                if rest or was % 10**9:
                    lines.append(b"sif %s %s_extra %d" % (name, field_name, rest << 2))
        self._xattrs(lines, path, name, old is not None)

    def _xattrs(self, lines: list[bytes], path: Path, name: bytes, existed: bool) -> None:
        now = self.trees.xattrs(self.trees.tree, path)
        before = self.trees.xattrs(self.trees.parent, path) if existed else {}
        for key in sorted(set(before) - set(now)):
            lines.append(b"ea_rm %s %s" % (name, _quote_bytes(key)))
        for key, value in now.items():
            if before.get(key) != value:
                file = b"ea%d" % len(self.out.values)
                self.out.values[os.fsdecode(file)] = value
                lines.append(
                    b"ea_set -f %s %s %s" % (_quote_bytes(self.values + b"/" + file), name, _quote_bytes(key))
                )

    def _flags(self, path: Path, mode: int) -> int:
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            return 0
        fd = os.open(self.trees.full(self.trees.tree, path), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        try:
            flags = array.array("i", [0])
            fcntl.ioctl(fd, FS_IOC_GETFLAGS, flags)
            return flags[0] & 0xFFFFFFFF
        finally:
            os.close(fd)

    def finish(self) -> Script:
        for folder in sorted(self.meta):
            for line in self.meta[folder]:
                self._in(folder, line)
        return self.out


def _made_mode(mode: int) -> int:
    """The mode debugfs gives what it makes: a file its source's permissions without the set-id
    and sticky bits, a folder 0755, a symlink 0777; a device or fifo gets its mode set always."""
    kind = stat.S_IFMT(mode)
    made = {stat.S_IFREG: kind | (mode & 0o777), stat.S_IFDIR: kind | 0o755, stat.S_IFLNK: kind | 0o777}
    return made.get(kind, -1)


def _quote(path: Path) -> bytes:
    return _quote_bytes(b"/" + b"/".join(path))


def _quote_bytes(text: bytes) -> bytes:
    # debugfs reads one command a line and takes a quoted word whole; nothing escapes a quote.
    if any(c in text for c in (b'"', b"\n", b"\r", b"\0")):
        raise Unwritable(f"a name debugfs cannot be given: {text!r}")
    return b'"' + text + b'"'
