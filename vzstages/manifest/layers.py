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

from .load import Document, KeyPath, dotted_path

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


def _explain(error: jsonschema.ValidationError) -> list[tuple[KeyPath, str]]:
    """Turn one jsonschema error into (key path, readable message) pairs."""
    path: KeyPath = tuple(error.absolute_path)
    schema: dict[str, Any] = error.schema if isinstance(error.schema, dict) else {}
    hint = schema.get("description")
    value = error.instance
    if error.validator == "additionalProperties" and isinstance(value, dict):
        known = sorted(schema.get("properties", {}))
        patterns = list(schema.get("patternProperties", {}))
        extras = [k for k in value if k not in known and not any(re.search(p, k) for p in patterns)]
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
        return [(path, f"{value!r} is not valid" + (f": {hint}" if hint else f" ({error.message})"))]
    if error.validator in ("minItems", "minProperties"):
        return [(path, "must not be empty")]
    return [(path, error.message + (f" ({hint})" if hint else ""))]


def schema_problems(doc: Document, schema: dict[str, Any]) -> list[str]:
    validator_cls = jsonschema.validators.validator_for(schema)
    validator = validator_cls(schema)
    found: list[tuple[int, str]] = []
    for error in validator.iter_errors(doc.data):
        for keypath, message in _explain(error):
            found.append((doc.line_of(keypath) or 0, f"{doc.where(keypath)}: {message}"))
    return [msg for _, msg in sorted(set(found))]


def secret_paths(schema: dict[str, Any], data: Any, prefix: KeyPath = ()) -> set[str]:
    """Dotted paths of the values in `data` that the schema marks `secret: true`."""
    found: set[str] = set()
    if schema.get("secret"):
        found.add(dotted_path(prefix))
        return found
    if isinstance(data, dict):
        props = schema.get("properties", {})
        patterns = schema.get("patternProperties", {})
        for key, value in data.items():
            sub = props.get(key) or next((s for p, s in patterns.items() if re.search(p, key)), None)
            if isinstance(sub, dict):
                found |= secret_paths(sub, value, (*prefix, key))
    return found
