"""Load a manifest (YAML or JSON) and remember the line of every key, for error messages."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import ManifestError

KeyPath = tuple[str | int, ...]


@dataclass
class Document:
    """The parsed manifest data plus the 1-based line where each key path starts."""

    path: Path
    data: dict[str, Any]
    lines: dict[KeyPath, int] = field(default_factory=dict)

    def line_of(self, keypath: KeyPath) -> int | None:
        """The line of the key path, or of its closest existing ancestor."""
        for end in range(len(keypath), -1, -1):
            line = self.lines.get(tuple(keypath[:end]))
            if line is not None:
                return line
        return None

    def where(self, keypath: KeyPath) -> str:
        line = self.line_of(keypath)
        dotted = dotted_path(keypath) or "(top level)"
        return f"{self.path}:{line}: {dotted}" if line else f"{self.path}: {dotted}"


def dotted_path(keypath: KeyPath) -> str:
    out = ""
    for part in keypath:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _construct(node: yaml.Node, keypath: KeyPath, lines: dict[KeyPath, int], loader: yaml.SafeLoader) -> Any:
    lines.setdefault(keypath, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node)
            # YAML allows non-string keys; manifests never need them, JSON Schema cannot check them.
            key = str(key)
            lines[(*keypath, key)] = key_node.start_mark.line + 1
            result[key] = _construct(value_node, (*keypath, key), lines, loader)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_construct(item, (*keypath, i), lines, loader) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def load_document(path: Path) -> Document:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ManifestError(str(path), [f"{path}: cannot read manifest: {exc.strerror}"]) from exc
    # JSON is (for manifests) a subset of YAML, so one loader serves both with line numbers.
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        lines: dict[KeyPath, int] = {}
        data = _construct(node, (), lines, loader) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ManifestError(str(path), [f"{where}: not valid YAML/JSON: {problem}"]) from exc
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise ManifestError(
            str(path), [f"{path}: a manifest must be a mapping of keys (name, provider, ...)"]
        )
    return Document(path=path, data=data, lines=lines)
