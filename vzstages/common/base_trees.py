"""Base systems kept beside the package cache, so that a second volume layout, provider or cache
on this host unpacks the base system instead of running mmdebstrap again (mkosi's incremental
cache does the same for its base trees).

A tree is a tar of what mmdebstrap left in the image, named by everything that shaped it: the
release, architecture, variant, extra packages, keyring and mirror, the suite's InRelease (the
archive's state), mmdebstrap's version and this module's and bootstrap.py's code. It is stored
only when the archive did not move while mmdebstrap ran. Like the .debs beside it, it is this
host's own file, written whole (renamed into place) by a build running as root: it is trusted as
the local store trusts its own records, and a tree that does not read back whole is a miss.
The os stage's key is not changed by this: a tree is what mmdebstrap would produce again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..atomic import atomic_output, write_atomic
from ..bounded import read_regular
from ..errors import CommandError, VzError
from ..host import Host

FORMAT = 1
KEPT = 4  # trees kept per host: a few releases and architectures, each some 100-300 MiB
RECORD_LIMIT = 4096
# GNU tar as the image needs it: owners by number, file capabilities and ACLs kept.
TAR_OPTIONS = ["--numeric-owner", "--xattrs", "--xattrs-include=*", "--acls", "--anchored"]
SOURCES = (Path(__file__), Path(__file__).with_name("bootstrap.py"))


def tree_key(facts: dict[str, object]) -> str:
    code = hashlib.sha256(b"".join(p.read_bytes() for p in SOURCES)).hexdigest()
    text = json.dumps({"format": FORMAT, "code": code, **facts}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class BaseTrees:
    folder: Path
    host: Host

    def _tar(self, key: str) -> Path:
        return self.folder / f"{key}.tar"

    def _record(self, key: str) -> Path:
        return self.folder / f"{key}.json"

    def _size(self, key: str) -> int | None:
        """The size the tree's record gives, or None when there is no whole record."""
        try:
            record = json.loads(read_regular(self._record(key), RECORD_LIMIT))
            size = record["size"] if isinstance(record, dict) else None
        except (OSError, ValueError, KeyError, RecursionError):
            return None
        return size if isinstance(size, int) and size > 0 else None

    def restore(self, key: str, root: Path) -> bool:
        """Unpack the tree into `root` (its filesystems mounted); False on a miss."""
        size = self._size(key)
        tree = self._tar(key)
        try:
            whole = tree.stat().st_size == size
        except OSError:
            whole = False
        if not whole:
            return False
        os.utime(self._record(key))  # used: pruned last
        try:
            self.host.run(["tar", *TAR_OPTIONS, "-xpf", str(tree), "-C", str(root)])
        except CommandError as exc:
            # The root now holds part of a tree: mmdebstrap must not run over it.
            self._remove(self._record(key))
            raise VzError(
                f"the base system kept in {tree} could not be unpacked ({exc}); it is removed, build again"
            ) from None
        return True

    def save(self, key: str, root: Path, mounts: list[str]) -> None:
        """Keep what mmdebstrap left in `root`, less each mounted filesystem's lost+found."""
        self.folder.mkdir(parents=True, exist_ok=True)
        excluded = sorted({f".{m.rstrip('/')}/lost+found" for m in mounts})
        with atomic_output(self._tar(key)) as part:
            self.host.run(
                [
                    "tar",
                    *TAR_OPTIONS,
                    *[f"--exclude={e}" for e in excluded],
                    "-cf",
                    str(part),
                    "-C",
                    str(root),
                    ".",
                ]
            )
            size = part.stat().st_size
        write_atomic(self._record(key), json.dumps({"format": FORMAT, "size": size}))
        self._prune()

    def _prune(self) -> None:
        records = sorted(self.folder.glob("*.json"), key=_mtime, reverse=True)
        for record in records[KEPT:]:
            self._remove(record)

    @staticmethod
    def _remove(record: Path) -> None:
        for path in (record, record.with_suffix(".tar")):
            with contextlib.suppress(OSError):
                path.unlink()


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
