"""`vzstages diff --files A B`: the files added, removed and changed between two manifests' images,
read from their last disk stages' trees (each opened read-only under a throw-away overlay, as
`vzstages shell` opens one), without booting them.

A file is described by its type and mode, owner, size and content digest (a symlink by its
target): the answer to "what changed between last week's image and today's" below the package
list. The trees are walked without following symlinks.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..cache.record import file_sha256
from ..errors import VzError

Entry = dict[str, Any]


def describe(path: Path, st: os.stat_result) -> Entry:
    entry: Entry = {
        "mode": stat.filemode(st.st_mode),
        "owner": f"{st.st_uid}:{st.st_gid}",
        "size": st.st_size,
    }
    if stat.S_ISREG(st.st_mode):
        entry["sha256"] = file_sha256(path)
    elif stat.S_ISLNK(st.st_mode):
        entry["target"] = os.readlink(path)
    return entry


def listing(root: Path) -> dict[str, Entry]:
    """Every path of the tree (as the image sees it) and what it is."""
    files: dict[str, Entry] = {}
    for folder, folders, names in os.walk(root):
        for name in sorted(folders + names):
            path = Path(folder) / name
            files["/" + str(path.relative_to(root))] = describe(path, path.lstat())
    return files


def compare(old: dict[str, Entry], new: dict[str, Entry]) -> dict[str, Any]:
    return {
        "added": {p: new[p] for p in sorted(new.keys() - old.keys())},
        "removed": {p: old[p] for p in sorted(old.keys() - new.keys())},
        "changed": {
            p: {
                k: [old[p].get(k), new[p].get(k)]
                for k in sorted(old[p].keys() | new[p].keys())
                if old[p].get(k) != new[p].get(k)
            }
            for p in sorted(old.keys() & new.keys())
            if old[p] != new[p]
        },
    }


@contextlib.contextmanager
def opened_tree(manifest: Path, cache: str, label: str) -> Iterator[Path]:
    """The tree of a manifest's last disk stage, from the cache, read-only."""
    from ..shell import stage_tree

    with stage_tree(manifest, cache, None, f"diff-{label}") as (_plan, _stage, tree):
        yield tree.root


def diff_files(a: Path, b: Path, cache: str) -> dict[str, Any]:
    if not all(p.suffix in (".yml", ".yaml") for p in (a, b)):
        raise VzError(
            "diff --files compares two manifests' images (their trees in the cache): give two manifests"
        )
    with opened_tree(a, cache, "a") as old_root, opened_tree(b, cache, "b") as new_root:
        return compare(listing(old_root), listing(new_root))


def file_lines(changes: dict[str, Any]) -> list[str]:
    lines = [f"+ {p} {e['mode']} {e['owner']} {e['size']}" for p, e in changes["added"].items()]
    lines += [f"- {p}" for p in changes["removed"]]
    for path, fields in changes["changed"].items():
        what = ", ".join(
            f"{k} {'changed' if k == 'sha256' else f'{v[0]} -> {v[1]}'}" for k, v in fields.items()
        )
        lines.append(f"~ {path}: {what}")
    counts = {kind: len(items) for kind, items in changes.items()}
    lines.append(f"files: {counts['added']} added, {counts['removed']} removed, {counts['changed']} changed")
    return lines
