"""Where packages come from: the mirror, and what state the archive is in.

The mirror is never written into vzstages: it comes from the manifest, else from the build host's
apt sources, else from debootstrap's own default (read from the debootstrap script itself).
"""

from __future__ import annotations

import contextlib
import email.utils
import http.client
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import xxhash

from ..errors import ArchiveMoved, VzError
from ..manifest.releases import lookup

APT_SOURCES = Path("/etc/apt")
DEBOOTSTRAP = Path("/usr/sbin/debootstrap")


@dataclass(frozen=True)
class Source:
    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]


def host_sources(apt_dir: Path = APT_SOURCES) -> list[Source]:
    """The build host's `deb` sources, one-line and deb822 formats."""
    found: list[Source] = []
    files = [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*.list"))]
    for path in files:
        if not path.is_file():
            continue
        for line in path.read_text(errors="replace").splitlines():
            line = re.sub(r"\[[^\]]*\]", "", line.split("#", 1)[0]).split()  # type: ignore[assignment]
            if len(line) >= 3 and line[0] == "deb":
                found.append(Source(line[1].rstrip("/"), (line[2],), tuple(line[3:])))
    for path in sorted((apt_dir / "sources.list.d").glob("*.sources")):
        for stanza in re.split(r"\n\s*\n", path.read_text(errors="replace")):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line or line[0].isspace():
                    continue
                name, _, value = line.partition(":")
                fields[name.strip().lower()] = value.strip()
            if "deb" in fields.get("types", "").split() and fields.get("enabled", "yes") != "no":
                for uri in fields.get("uris", "").split():
                    found.append(
                        Source(
                            uri.rstrip("/"),
                            tuple(fields.get("suites", "").split()),
                            tuple(fields.get("components", "").split()),
                        )
                    )
    return found


def _is_debian_archive(source: Source) -> bool:
    return (
        "main" in source.components
        and not any(s.endswith(("-security", "/updates")) for s in source.suites)
        and "security" not in source.uri
    )


def host_mirror(apt_dir: Path = APT_SOURCES) -> str | None:
    return next((s.uri for s in host_sources(apt_dir) if _is_debian_archive(s)), None)


def host_security_mirror(apt_dir: Path = APT_SOURCES) -> str | None:
    return next(
        (s.uri for s in host_sources(apt_dir) if any(x.endswith("-security") for x in s.suites)), None
    )


def debootstrap_default_mirror(script: Path = DEBOOTSTRAP) -> str | None:
    if not script.exists():
        return None
    match = re.search(r'^DEF_MIRROR="([^"]+)"', script.read_text(errors="replace"), re.MULTILINE)
    return match.group(1).rstrip("/") if match else None


def choose_mirror(manifest_mirror: str | None) -> str:
    mirror = manifest_mirror or host_mirror() or debootstrap_default_mirror()
    if not mirror:
        raise VzError(
            "no Debian mirror: set bootstrapper.mirror in the manifest "
            "(the build host has no apt sources and debootstrap names no default)"
        )
    return mirror.rstrip("/")


def choose_security_mirror(
    manifest_security: str | None, mirror: str, mirror_from_manifest: bool
) -> str | None:
    """The manifest's security mirror; else, beside a mirror the manifest chose, its -security
    twin; else the host's; else the twin of whatever mirror is used."""
    if manifest_security:
        return manifest_security.rstrip("/")
    host = None if mirror_from_manifest else host_security_mirror()
    if host:
        return host.rstrip("/")
    # The Debian mirror network's convention: <host>/debian-security beside <host>/debian.
    return mirror[: -len("/debian")] + "/debian-security" if mirror.endswith("/debian") else None


def has_security_suite(release: str) -> bool:
    info = lookup(release)
    return info is not None and info.version is not None


class Settings(Protocol):
    """A manifest, or a task's view of one."""

    def get(self, path: str, default: Any = None) -> Any: ...


def debian_suites(settings: Settings) -> dict[str, str]:
    """{suite: mirror} of the Debian suites the image's apt uses: the release, and -updates and
    -security where the release has them. The one answer for what apt installs from and what
    the stage keys' archive state is taken from."""
    release = settings.get("system.release")
    chosen = settings.get("packages.mirror") or settings.get("bootstrapper.mirror")
    mirror = choose_mirror(chosen)
    suites = {release: mirror}
    if has_security_suite(release):
        suites[f"{release}-updates"] = mirror
        security = choose_security_mirror(settings.get("packages.security"), mirror, bool(chosen))
        if security:
            suites[f"{release}-security"] = security
    return suites


# A suite's InRelease is a few hundred KiB; a mirror is never waited on for long.
MAX_RELEASE_BYTES = 16 << 20
RELEASE_DEADLINE = 30.0


def fetch_release(mirror: str, suite: str, deadline: float = RELEASE_DEADLINE) -> bytes:
    """The suite's InRelease (or Release) file; a clear error if the mirror does not carry it.

    A mirror is untrusted: the whole fetch has a deadline and a size cap, and a server error or
    a timeout means unreachable (the caller falls back to what it knew), not "no such release".
    """
    last_error = ""
    end = time.monotonic() + deadline
    for name in ("InRelease", "Release"):
        url = f"{mirror}/dists/{suite}/{name}"
        try:
            return _bounded_get(url, end)
        except urllib.error.HTTPError as exc:
            if exc.code >= 500 or exc.code in (408, 429):
                raise ArchiveUnreachable(f"the mirror {mirror} answered HTTP {exc.code} for {url}") from None
            last_error = f"{url}: HTTP {exc.code}"
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            raise ArchiveUnreachable(
                f"cannot reach the mirror {mirror}: {getattr(exc, 'reason', exc)}"
            ) from None
    raise VzError(
        f"the mirror {mirror} does not carry release '{suite}' ({last_error}). "
        "An end-of-life release needs an archive mirror: set bootstrapper.mirror"
    )


def _bounded_get(url: str, end: float) -> bytes:
    chunks: list[bytes] = []
    size = 0
    with urllib.request.urlopen(url, timeout=max(1.0, min(10.0, end - time.monotonic()))) as response:
        while True:
            if time.monotonic() > end:
                raise ArchiveUnreachable(f"{url}: no complete answer within {RELEASE_DEADLINE:.0f}s")
            chunk = response.read1(65536) if hasattr(response, "read1") else response.read(65536)
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > MAX_RELEASE_BYTES:
                raise ArchiveUnreachable(
                    f"{url}: larger than {MAX_RELEASE_BYTES >> 20} MiB, not a Release file"
                )
            chunks.append(chunk)


class ArchiveUnreachable(VzError):
    pass


def suite_digest(release_file: bytes) -> str:
    """What a stage key holds of a suite's state: a digest of its InRelease."""
    return xxhash.xxh3_128_hexdigest(release_file)


def list_name(mirror: str, suite: str) -> str:
    """The file apt keeps a suite's InRelease in (var/lib/apt/lists), as apt names it: the URI
    without its scheme and credentials, slashes as underscores."""
    uri = re.sub(r"^[a-z][a-z0-9+.-]*://", "", mirror.rstrip("/"))
    uri = re.sub(r"^[^/@]*@", "", uri)
    return f"{uri.replace('/', '_')}_dists_{suite}_InRelease"


_DATE = re.compile(rb"^Date: *([^\r\n]{1,64})\r?$", re.MULTILINE)


def release_date(release_file: bytes) -> int:
    """The Release file's Date, in seconds since the epoch (0 if it has none that parses)."""
    match = _DATE.search(release_file)
    if match is None:
        return 0
    with contextlib.suppress(TypeError, ValueError):
        return int(email.utils.parsedate_to_datetime(match[1].decode("ascii", "replace")).timestamp())
    return 0


def check_state(suite: str, release_file: bytes, expected: str) -> None:
    """ArchiveMoved if the suite is not in the state the key names ("unreachable": unknown)."""
    if expected not in ("", "unreachable") and suite_digest(release_file) != expected:
        raise ArchiveMoved(
            f"the archive's {suite} has changed since its state was taken for this build's keys: "
            "nothing is built from it under the old key; `vzstages build` plans again with the archive "
            "as it is now (with doit: refresh=1)"
        )
