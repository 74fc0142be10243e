"""Load a manifest (YAML or JSON) and remember the line of every key, for error messages.

A manifest is input from anywhere, so loading is bounded: a regular file of at most MAX_BYTES,
UTF-8 (or UTF-16 with a byte order mark), at most MAX_DEPTH levels deep and MAX_NODES values
once aliases are expanded (an alias bomb stops here, in bounded memory), no duplicate keys, and
text keys only. Each refusal is a ManifestError naming the file and, where there is one, the line.
"""

from __future__ import annotations

import codecs
import errno
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..bounded import read_regular
from ..errors import ManifestError

KeyPath = tuple[str | int, ...]

MAX_BYTES = 1 << 20
MAX_DEPTH = 32
MAX_NODES = 50_000


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


class _Refused(Exception):
    def __init__(self, line: int | None, message: str):
        self.line = line
        self.message = message


@dataclass
class _Builder:
    loader: yaml.SafeLoader
    lines: dict[KeyPath, int] = field(default_factory=dict)
    nodes: int = 0

    def build(self, node: yaml.Node, keypath: KeyPath) -> Any:
        line = node.start_mark.line + 1
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _Refused(line, f"more than {MAX_NODES} values (aliases expanding without end?)")
        if len(keypath) > MAX_DEPTH:
            raise _Refused(line, f"nested more than {MAX_DEPTH} levels deep")
        self.lines.setdefault(keypath, line)
        if isinstance(node, yaml.MappingNode):
            explicit = sum(1 for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge")
            self.loader.flatten_mapping(node)  # `<<: *defaults` pairs go first; explicit keys override them
            merged = len(node.value) - explicit
            result: dict[str, Any] = {}
            seen: set[str] = set()
            for index, (key_node, value_node) in enumerate(node.value):
                if not isinstance(key_node, yaml.ScalarNode):
                    raise _Refused(key_node.start_mark.line + 1, "a key must be text, not a list or mapping")
                # YAML allows non-text keys (1, true); JSON Schema checks text keys only.
                key = str(self._scalar(key_node))
                if index >= merged:
                    if key in seen:
                        raise _Refused(key_node.start_mark.line + 1, f"duplicate key '{key}'")
                    seen.add(key)
                self.lines[(*keypath, key)] = key_node.start_mark.line + 1
                result[key] = self.build(value_node, (*keypath, key))
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*keypath, i)) for i, item in enumerate(node.value)]
        return self._scalar(node)

    def _scalar(self, node: yaml.Node) -> Any:
        try:
            return self.loader.construct_object(node, deep=True)
        except ValueError as exc:  # an integer too long to convert, say
            raise _Refused(node.start_mark.line + 1, f"unreadable value: {exc}") from None


def read_text(path: Path) -> str:
    """The manifest's text: a regular file, not too large, UTF-8 or UTF-16 with a BOM."""
    fail = lambda message: ManifestError(str(path), [f"{path}: {message}"])  # noqa: E731
    try:
        data = read_regular(path, MAX_BYTES)
    except OSError as exc:
        message = {
            errno.EINVAL: "a manifest must be a regular file",
            errno.EFBIG: f"larger than {MAX_BYTES // 1024} KiB: not a manifest",
        }.get(exc.errno or 0, f"cannot read manifest: {exc.strerror}")
        raise fail(message) from None
    boms = {codecs.BOM_UTF8: "utf-8-sig", codecs.BOM_UTF16_LE: "utf-16", codecs.BOM_UTF16_BE: "utf-16"}
    encoding = next((name for bom, name in boms.items() if data.startswith(bom)), "utf-8")
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ManifestError(
            str(path), [f"{path}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})"]
        ) from None
    if "\0" in text:
        line = text[: text.index("\0")].count("\n") + 1
        raise ManifestError(str(path), [f"{path}:{line}: a NUL character: not a text file"])
    return text


def refuse_deep_nesting(text: str, path: Path) -> None:
    """MAX_DEPTH checked first by libyaml's parser, which streams events in C: PyYAML's own
    scanner is quadratic in flow nesting (3000 `[` took 2-11 s before its recursion stopped)."""
    if not yaml.__with_libyaml__:
        return
    depth, line = 0, 0
    try:
        for event in yaml.parse(text, Loader=yaml.CSafeLoader):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                line = getattr(event.start_mark, "line", -1) + 1
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
            if depth > MAX_DEPTH:
                break
    except yaml.YAMLError as exc:
        if "nesting depth" not in str(exc):  # libyaml's own limit, which its scanner meets first
            return  # the loader below says what is wrong, with its line
        depth, line = MAX_DEPTH + 1, getattr(getattr(exc, "problem_mark", None), "line", -1) + 1
    if depth > MAX_DEPTH:
        where = f"{path}:{line}" if line else str(path)
        raise ManifestError(str(path), [f"{where}: nested more than {MAX_DEPTH} levels deep"])


def load_document(path: Path) -> Document:
    text = read_text(path)
    refuse_deep_nesting(text, path)
    # JSON is (for manifests) a subset of YAML, so one loader serves both with line numbers.
    try:
        loader = yaml.SafeLoader(text)
    except yaml.YAMLError as exc:  # the reader refuses control characters at once
        raise ManifestError(str(path), [f"{path}: not valid YAML/JSON: {exc}"]) from None
    builder = _Builder(loader)
    try:
        node = loader.get_single_node()
        data = builder.build(node, ()) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ManifestError(str(path), [f"{where}: not valid YAML/JSON: {problem}"]) from None
    except _Refused as exc:
        where = f"{path}:{exc.line}" if exc.line else str(path)
        raise ManifestError(str(path), [f"{where}: {exc.message}"]) from None
    except RecursionError:
        raise ManifestError(str(path), [f"{path}: nested too deeply to read"]) from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise ManifestError(
            str(path), [f"{path}: a manifest must be a mapping of keys (name, provider, ...)"]
        )
    return Document(path=path, data=data, lines=builder.lines)
