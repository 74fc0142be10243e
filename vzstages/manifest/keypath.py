"""Dotted manifest keys ("system.hostname") as paths, where a key may itself hold dots.

`packages.apt.conf.d` is the key `apt.conf.d` under `packages`, not packages -> apt -> conf -> d.
The schema says which: at each level the longest run of parts that names a property (or matches
a patternProperty) is one key. Tasks declare their reads in this dotted form; `resolve` is what
turns them into paths, for the manifest view, the stage keys and the check that every declared
read exists in the schema.
"""

from __future__ import annotations

import re
from typing import Any

Path = tuple[str, ...]


def _deref(schema: dict[str, Any], node: Any) -> Any:
    """Follow local `$ref`s (#/$defs/name) of the merged schema."""
    seen = 0
    while isinstance(node, dict) and isinstance(node.get("$ref"), str) and seen < 16:
        ref = node["$ref"]
        if not ref.startswith("#/"):
            return node
        target: Any = schema
        for part in ref[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        node, seen = target, seen + 1
    return node


def _child(schema: dict[str, Any], node: Any, name: str) -> Any | None:
    if not isinstance(node, dict):
        return None
    properties = node.get("properties") or {}
    if name in properties:
        return _deref(schema, properties[name])
    for pattern, sub in (node.get("patternProperties") or {}).items():
        if re.search(pattern, name):
            return _deref(schema, sub)
    return None


def resolve(schema: dict[str, Any], dotted: str) -> Path | None:
    """The path the schema gives `dotted`, or None if the schema has no such key."""
    parts = dotted.split(".")
    node: Any = _deref(schema, schema)
    path: list[str] = []
    i = 0
    while i < len(parts):
        for j in range(len(parts), i, -1):
            name = ".".join(parts[i:j])
            child = _child(schema, node, name)
            if child is not None:
                path.append(name)
                node, i = child, j
                break
        else:
            return None
    return tuple(path)


def lookup(data: Any, path: Path) -> Any:
    """The value at `path`; KeyError if any part of it is absent."""
    node = data
    for part in path:
        if not isinstance(node, dict) or part not in node:
            raise KeyError(".".join(path))
        node = node[part]
    return node


def covers(declared: Path, path: Path) -> bool:
    """Declaring `plugins.admin_user` allows reading it and anything below it."""
    return path[: len(declared)] == declared
