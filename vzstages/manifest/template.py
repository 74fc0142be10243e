"""bootstrap-vz's `{system.release}` / `{%Y}` substitutions in names, descriptions and sources."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

_FIELD = re.compile(r"\{([^{}]+)\}")


class TemplateError(ValueError):
    pass


def lookup_dotted(data: Any, dotted: str) -> Any:
    node = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(dotted)
        node = node[part]
    return node


def render(template: str, data: dict[str, Any], when: datetime) -> str:
    def substitute(match: re.Match[str]) -> str:
        field = match.group(1)
        if field.startswith("%"):
            return when.strftime(field)
        try:
            value = lookup_dotted(data, field)
        except KeyError:
            raise TemplateError(
                f"unknown field {{{field}}} (use a manifest key such as "
                "{system.release}, or a date field such as {%Y})"
            ) from None
        if isinstance(value, dict | list):
            raise TemplateError(f"{{{field}}} is not a single value")
        return str(value)

    return _FIELD.sub(substitute, template)
