"""The host-side .deb cache that mmdebstrap and apt share across builds."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path

from ..model.info import BuildInfo


def package_cache(info: BuildInfo) -> Path:
    """The host-side .deb cache shared by every build (mmdebstrap's and apt's)."""
    path = info.package_cache / info.facts.get("architecture", "all")
    (path / "partial").mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def package_cache_lock(info: BuildInfo) -> Iterator[Path]:
    """One writer at a time in a shared package cache: concurrent builds (of any manifests) would
    otherwise collide on apt's archive lock or on mmdebstrap's downloads. Yields the cache."""
    cache = package_cache(info)
    with open(cache.parent / f"{cache.name}.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            info.say(f"waiting for another build that is using the package cache {cache}")
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield cache
