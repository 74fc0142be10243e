"""The archive's state, as an input of the stages that download packages.

A stage that downloads is only as fresh as the archive was when it ran. Its key therefore holds
the digest of each suite's InRelease file, under this refresh policy:

- the digest is fetched at most once per `max_age` (default 24 hours, VZSTAGES_ARCHIVE_MAX_AGE)
  and remembered in cache/archive/; within that time keys stay put and checkpoints are reused;
- after that it is fetched again: if the suite changed, the downloading stages rebuild, so a cache
  never serves packages older than the policy allows;
- `--refresh` fetches it now;
- offline, the last known digest is used with a warning, and the build goes on from the cache;
- with a remote cache, the hosts share what they have seen: a host takes the newest state any of
  them published, if it is within the policy, so that a team computes the same keys (and shares
  the downloading stages) instead of each host following the archive on its own schedule.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from ..atomic import write_atomic
from ..bounded import read_regular
from ..common.archive import (
    ArchiveUnreachable,
    debian_suites,
    fetch_release,
    suite_digest,
)
from ..errors import VzError
from ..manifest import Manifest
from ..units import parse_age
from .record import load_json

log = logging.getLogger("vzstages.progress")
DEFAULT_MAX_AGE = 24 * 3600.0


def max_age_from_env() -> float:
    value = os.environ.get("VZSTAGES_ARCHIVE_MAX_AGE")
    if not value:
        return DEFAULT_MAX_AGE
    try:
        return parse_age(value)
    except ValueError as exc:
        raise VzError(f"VZSTAGES_ARCHIVE_MAX_AGE: {exc}") from None


class SharedStates(Protocol):
    """Where hosts publish the archive states they fetch (the remote cache)."""

    def archive_state(self, name: str) -> dict[str, Any] | None: ...

    def publish_archive_state(self, name: str, state: dict[str, Any]) -> None: ...


# A state fetched "later than now" by this much is another clock's error, not a newer state.
CLOCK_SKEW = 300.0


class ArchiveState:
    def __init__(
        self,
        folder: Path,
        max_age: float | None = None,
        refresh: bool = False,
        shared: SharedStates | None = None,
    ):
        self.folder = folder
        self.max_age = max_age_from_env() if max_age is None else max_age
        self.refresh = refresh
        self.shared = shared
        self.warnings: list[str] = []
        self._fetched: dict[str, str] = {}  # per process: one fetch per suite, whatever asks

    def suites(self, manifest: Manifest, suffixes: Sequence[str]) -> dict[str, str]:
        """{suite: digest} for the suites (release + suffix) a stage downloads from."""
        release = manifest.get("system.release")
        used = debian_suites(manifest)
        return {
            release + x: self.digest(used[release + x], release + x) for x in suffixes if release + x in used
        }

    def digest(self, mirror: str, suite: str) -> str:
        url = f"{mirror}/dists/{suite}"
        if url in self._fetched:
            return self._fetched[url]
        name = suite_digest(url.encode())
        path = self.folder / f"{name}.json"
        known = self._known(path)
        if not self.refresh:
            known = self._newer_shared(name, url, path, known)
        fresh = known is not None and time.time() - known["fetched"] < self.max_age
        if fresh and not self.refresh:
            assert known is not None
            value = str(known["digest"])
        else:
            try:
                value = suite_digest(fetch_release(mirror, suite))
                state = {"url": url, "fetched": time.time(), "digest": value}
                self.folder.mkdir(parents=True, exist_ok=True)
                write_atomic(path, json.dumps(state))
                if self.shared is not None:
                    self.shared.publish_archive_state(name, state)
            except ArchiveUnreachable as exc:
                if known is None:
                    value = "unreachable"
                    warning = f"archive unreachable ({exc}); the state of {suite} is unknown"
                else:
                    value = str(known["digest"])
                    age = (time.time() - known["fetched"]) / 3600
                    warning = f"archive unreachable ({exc}); using the state of {suite} seen {age:.0f}h ago"
                self.warnings.append(warning)
                log.warning("warning: %s", warning)
        self._fetched[url] = value
        return value

    def _newer_shared(
        self, name: str, url: str, path: Path, known: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        """The state another host published, if it is newer than ours and within the policy
        (then it is ours too); else what we knew."""
        if self.shared is None:
            return known
        team = self.shared.archive_state(name)
        now = time.time()
        if (
            team is None
            or team["url"] != url
            or not now - self.max_age < team["fetched"] <= now + CLOCK_SKEW
            or (known is not None and team["fetched"] <= known["fetched"])
        ):
            return known
        self.folder.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(team))
        return team

    def _known(self, path: Path) -> dict[str, Any] | None:
        """What was last seen of a suite, or None (a damaged file is a warning, then refetched)."""
        try:
            if not path.is_file():
                return None
            data = load_json(read_regular(path, 65536))
            if (
                isinstance(data, dict)
                and isinstance(data.get("digest"), str)
                and isinstance(data.get("fetched"), int | float)
                and not isinstance(data.get("fetched"), bool)
            ):
                if data["fetched"] <= time.time() + CLOCK_SKEW:
                    return data
                problem = "dated in the future (a wrong clock, or planted): fetched again"
            else:
                problem = "not an archive state record"
        except (OSError, ValueError) as exc:
            problem = str(exc)
        warning = f"ignoring {path}: {problem}"
        self.warnings.append(warning)
        log.warning("warning: %s", warning)
        return None
