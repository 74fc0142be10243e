"""Layered JSON Schema validation: the base schema, then the provider's, then each plugin's.

Each layer is a fragment of the same manifest schema; they are merged (properties united, later
layers adding keys) so that `additionalProperties: false` still catches every unknown key.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from .load import Document, KeyPath

BASE_SCHEMA = Path(__file__).with_name("schema.yml")


def base_schema() -> dict[str, Any]:
    return yaml.safe_load(BASE_SCHEMA.read_text())


def merge(base: dict[str, Any], layer: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in layer.items():
        if key == "required":
            out[key] = sorted(set(out.get(key, [])) | set(value))
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


_JSON_TYPES = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "null": "nothing",
}


def _pattern(validator: Any, pattern: str, instance: Any, schema: dict[str, Any]) -> Any:
    """JSON Schema's `pattern` with ECMA-262's `$`: Python's `$` also matches before a final
    newline, so `^[a-z]+$` would accept "host\\n". `\\Z` is the end of the string only."""
    if isinstance(instance, str):
        translated = (
            pattern[:-1] + r"\Z" if pattern.endswith("$") and not pattern.endswith(r"\$") else pattern
        )
        if not re.search(translated, instance):
            yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


def _is_integer(checker: Any, instance: Any) -> bool:
    # JSON Schema counts 3128.0 as an integer; a manifest that says 3128.0 for a port is a mistake.
    return isinstance(instance, int) and not isinstance(instance, bool)


_BASE = jsonschema.Draft202012Validator
Validator = jsonschema.validators.extend(
    _BASE,
    validators={"pattern": _pattern},
    type_checker=_BASE.TYPE_CHECKER.redefine("integer", _is_integer),
)


def _explain(error: jsonschema.ValidationError, secret: bool) -> list[tuple[KeyPath, str]]:
    """Turn one jsonschema error into (key path, readable message) pairs."""
    path: KeyPath = tuple(error.absolute_path)
    schema: dict[str, Any] = error.schema if isinstance(error.schema, dict) else {}
    hint = schema.get("description")
    value: Any = _Shortened("(a secret)") if secret else _short(error.instance)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = sorted(schema.get("properties", {}))
        patterns = list(schema.get("patternProperties", {}))
        extras = [k for k in error.instance if k not in known and not any(re.search(p, k) for p in patterns)]
        allowed = ", ".join(known) or "none"
        return [((*path, k), f"unknown key '{k}' (allowed here: {allowed})") for k in extras]
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        return [(path, f"missing required key '{missing}'")]
    if error.validator == "enum":
        options = ", ".join(str(o) for o in schema.get("enum", []))
        return [(path, f"{value!r} is not supported (choose one of: {options})")]
    if error.validator == "type":
        declared = schema.get("type", [])
        wanted = declared if isinstance(declared, list) else [declared]
        names = " or ".join(_JSON_TYPES.get(str(t), str(t)) for t in wanted)
        return [(path, f"expected {names}, got {value!r}")]
    if error.validator in ("pattern", "anyOf", "oneOf", "format"):
        detail = f": {hint}" if hint else ("" if secret else f" ({_short(error.message)})")
        return [(path, f"{value!r} is not valid{detail}")]
    if error.validator in ("minItems", "minProperties"):
        return [(path, "must not be empty")]
    if secret:
        rule = str(error.validator)
        return [(path, f"not valid ({rule} {schema.get(rule)!r})")]
    return [(path, _short(error.message) + (f" ({hint})" if hint else ""))]


def _short(value: Any, limit: int = 120) -> Any:
    """A value, or the start of a long one (an error must not echo a 5000-digit number)."""
    text = repr(value)
    return value if len(text) <= limit else _Shortened(text[: limit - 3] + "...")


class _Shortened(str):
    def __repr__(self) -> str:
        return str(self)


def schema_problems(doc: Document, schema: dict[str, Any], secrets: frozenset[tuple[str, ...]]) -> list[str]:
    found: list[tuple[int, str]] = []
    for error in Validator(schema).iter_errors(doc.data):
        path = tuple(str(p) for p in error.absolute_path)
        secret = any(path[: len(s)] == s for s in secrets)
        for where, message in _explain(error, secret):
            found.append((doc.line_of(where) or 0, f"{doc.where(where)}: {message}"))
    return [msg for _, msg in sorted(set(found))]


def _subschema(schema: dict[str, Any], node: dict[str, Any], key: str) -> dict[str, Any] | None:
    sub = (node.get("properties") or {}).get(key)
    if sub is None:
        sub = next((s for p, s in (node.get("patternProperties") or {}).items() if re.search(p, key)), None)
    if sub is None and isinstance(node.get("additionalProperties"), dict):
        sub = node["additionalProperties"]
    return _deref(schema, sub) if isinstance(sub, dict) else None


def _deref(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        target = (schema.get("$defs") or {}).get(ref.removeprefix("#/$defs/"))
        return target if isinstance(target, dict) else node
    return node


def marked_paths(
    schema: dict[str, Any], data: Any, mark: str, node: Any = None, prefix: KeyPath = ()
) -> list[KeyPath]:
    """The paths of the values in `data` whose schema has `mark: true` (secret, template)."""
    node = _deref(schema, schema if node is None else node)
    if node.get(mark):
        return [prefix]
    found: list[KeyPath] = []
    if isinstance(data, dict):
        for key, value in data.items():
            sub = _subschema(schema, node, key)
            if sub is not None:
                found += marked_paths(schema, value, mark, sub, (*prefix, key))
    elif isinstance(data, list) and isinstance(node.get("items"), dict):
        for index, value in enumerate(data):
            found += marked_paths(schema, value, mark, node["items"], (*prefix, index))
    return found


def secret_paths(schema: dict[str, Any], data: Any) -> set[tuple[str, ...]]:
    """Paths of the values the schema marks `secret: true` (entered in keys only as hashes)."""
    return {tuple(str(p) for p in path) for path in marked_paths(schema, data, "secret")}


def template_paths(schema: dict[str, Any], data: Any) -> list[KeyPath]:
    """Paths of the text values the schema marks `template: true` ({system.release}, {%Y})."""
    return [p for p in marked_paths(schema, data, "template") if isinstance(_value_at(data, p), str)]


def _value_at(data: Any, path: KeyPath) -> Any:
    for part in path:
        data = data[part]
    return data
