"""bootstrap-vz's `{system.release}` / `{%Y}` substitutions in names, descriptions and sources."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

FIELD = re.compile(r"\{([^{}]+)\}")


class TemplateError(ValueError):
    pass


def fields(template: str) -> list[str]:
    """The manifest keys a template refers to (date fields such as {%Y} left out)."""
    return [f for f in FIELD.findall(template) if not f.startswith("%")]


def render(template: str, lookup: Callable[[str], Any], when: datetime) -> str:
    """Substitute each {field}: `lookup` gives a manifest key's value (KeyError if absent)."""

    def substitute(match: re.Match[str]) -> str:
        field = match.group(1)
        if field.startswith("%"):
            try:
                return when.strftime(field)
            except ValueError:
                raise TemplateError(f"{{{field}}} is not a date field such as {{%Y}}") from None
        try:
            value = lookup(field)
        except KeyError:
            raise TemplateError(
                f"unknown field {{{field}}} (use a manifest key such as "
                "{system.release}, or a date field such as {%Y})"
            ) from None
        if isinstance(value, dict | list):
            raise TemplateError(f"{{{field}}} is not a single value")
        return str(value)

    return FIELD.sub(substitute, template)
