"""Debian releases vzstages knows by name. The mirror has the last word at build time."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Release:
    codename: str
    version: int | None  # None for the rolling suites
    archived: bool = False  # only on archive mirrors now; debootstrap needs an archive mirror for it


RELEASES = {
    r.codename: r
    for r in (
        Release("squeeze", 6, archived=True),
        Release("wheezy", 7, archived=True),
        Release("jessie", 8, archived=True),
        Release("stretch", 9, archived=True),
        Release("buster", 10, archived=True),
        Release("bullseye", 11),
        Release("bookworm", 12),
        Release("trixie", 13),
        Release("forky", 14),
        Release("duke", 15),
        Release("sid", None),
    )
}
SUITE_ALIASES = {"unstable": "sid", "stable": "trixie", "oldstable": "bookworm", "testing": "forky"}


def lookup(name: str) -> Release | None:
    return RELEASES.get(SUITE_ALIASES.get(name, name))
