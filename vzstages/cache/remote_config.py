"""Where a host's remote cache is and what the host may do with it: from the command line, else
the environment. Checked when read: a typo is a clear error before any work, not a warning per stage."""

from __future__ import annotations

import os
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from ..errors import VzError
from .signing import load_signing_key, load_trusted_keys

MODES = ("readwrite", "read", "write", "off")
_URL = re.compile(r"s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:/(?P<prefix>[\w./-]*))?", re.ASCII)


@dataclass(frozen=True)
class RemoteConfig:
    """Where the remote cache is and what this host may do with it (per host, never per manifest)."""

    url: str
    mode: str = "readwrite"
    endpoint_url: str | None = None
    signing_key: Path | None = None  # an OpenSSH ed25519 private key: pushes are signed with it
    trusted_keys: Path | None = None  # OpenSSH public keys, one a line: pulls need a signature by one

    @property
    def directory(self) -> Path | None:
        """The shared folder of a directory remote (`/mnt/cache`, `file:///mnt/cache`), else None."""
        if self.url.startswith("file://"):
            return Path(urllib.parse.unquote(urllib.parse.urlsplit(self.url).path))
        return Path(self.url) if self.url.startswith("/") else None

    @property
    def bucket(self) -> str:
        match = _URL.fullmatch(self.url)
        assert match is not None  # checked by remote_config
        return match["bucket"]

    @property
    def prefix(self) -> str:
        match = _URL.fullmatch(self.url)
        assert match is not None
        prefix = (match["prefix"] or "").strip("/")
        return f"{prefix}/" if prefix else ""

    @property
    def can_read(self) -> bool:
        return self.mode in ("readwrite", "read")

    @property
    def can_write(self) -> bool:
        return self.mode in ("readwrite", "write")


def remote_config(
    url: str | None = None,
    mode: str | None = None,
    endpoint_url: str | None = None,
    signing_key: str | None = None,
    trusted_keys: str | None = None,
) -> RemoteConfig | None:
    """From the command line, else the environment (VZSTAGES_REMOTE, VZSTAGES_REMOTE_MODE,
    VZSTAGES_REMOTE_ENDPOINT, VZSTAGES_REMOTE_SIGNING_KEY, VZSTAGES_REMOTE_TRUSTED_KEYS)."""
    env = os.environ.get
    url = url if url is not None else env("VZSTAGES_REMOTE", "")
    mode = (mode or env("VZSTAGES_REMOTE_MODE") or "readwrite").strip().lower()
    if mode == "read-write":
        mode = "readwrite"
    if mode not in MODES:
        raise VzError(f"remote mode {mode!r}: use read, write, readwrite or off")
    if not url or mode == "off":
        return None
    if not _URL.fullmatch(url) and not _directory_url(url):
        raise VzError(
            f"remote cache {url!r}: expected s3://BUCKET[/PREFIX], or a shared folder: /PATH or file:///PATH"
        )
    endpoint_url = endpoint_url or env("VZSTAGES_REMOTE_ENDPOINT") or None
    if endpoint_url is not None:
        parsed = urllib.parse.urlsplit(endpoint_url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise VzError(f"remote endpoint {endpoint_url!r}: expected http(s)://HOST[:PORT]")
    signing = signing_key or env("VZSTAGES_REMOTE_SIGNING_KEY")
    trusted = trusted_keys or env("VZSTAGES_REMOTE_TRUSTED_KEYS")
    config = RemoteConfig(
        url=url,
        mode=mode,
        endpoint_url=endpoint_url,
        signing_key=Path(signing) if signing else None,
        trusted_keys=Path(trusted) if trusted else None,
    )
    # Key files are read now: a typo is a clear error before any work, not a warning per stage.
    if config.signing_key:
        load_signing_key(config.signing_key)
    if config.trusted_keys:
        load_trusted_keys(config.trusted_keys)
    return config


def _directory_url(url: str) -> bool:
    if url.startswith("file://"):
        parsed = urllib.parse.urlsplit(url)
        return parsed.netloc in ("", "localhost") and parsed.path.startswith("/") and "\0" not in url
    return url.startswith("/") and "\0" not in url
