"""Signed objects in a remote cache: ed25519 over the exact bytes, checked before they are parsed.

A signed object is one line naming the signer and the signature, then the payload:

    vzstages-signed ed25519 <public key, base64> <signature, base64>\\n<payload bytes>

The signature covers the payload's bytes as stored, so nothing is parsed (a JSON nesting bomb,
a field the parser trips on) before a trusted key vouched for it, as Nix's binary caches sign
their narinfo. Keys are OpenSSH files: the signing key an ed25519 private key (`ssh-keygen -t
ed25519 -N ''`), the trusted keys a list of public keys as in authorized_keys.
"""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path
from typing import Any

from ..errors import VzError

MAGIC = b"vzstages-signed ed25519 "
MAX_KEY_FILE = 64 << 10
MAX_HEADER = 256


class SignatureError(ValueError):
    """An object that is not signed as the trusted keys require."""


def read_key_file(path: Path, what: str) -> bytes:
    """A key file's bytes, bounded: never a FIFO (it would hang), a device or a huge file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise VzError(f"{what} {path}: {exc.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise VzError(f"{what} {path}: not a regular file")
        data = os.read(fd, MAX_KEY_FILE + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_KEY_FILE:
        raise VzError(f"{what} {path}: larger than a key file can be")
    return data


def load_signing_key(path: Path) -> Any:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_ssh_private_key

    data = read_key_file(path, "signing key")
    try:
        key = load_ssh_private_key(data, password=None)
    except Exception as exc:  # cryptography raises several kinds for a file that is not a key
        raise VzError(
            f"signing key {path}: not an unencrypted OpenSSH private key ({type(exc).__name__}); "
            "make one with ssh-keygen -t ed25519 -N ''"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise VzError(f"signing key {path}: not an ed25519 key (ssh-keygen -t ed25519)")
    return key


def _public_key_of(line: str) -> bytes:
    """The raw ed25519 key on an authorized_keys-style line (options before it allowed)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_ssh_public_key

    words = line.split()
    if "PRIVATE KEY" in line:
        raise ValueError("this is a private key; list public keys (the .pub file)")
    if "ssh-ed25519" not in words or words.index("ssh-ed25519") + 1 >= len(words):
        raise ValueError("no ssh-ed25519 public key on this line")
    at = words.index("ssh-ed25519")
    try:
        key = load_ssh_public_key(f"ssh-ed25519 {words[at + 1]}".encode())
    except Exception as exc:  # a damaged key: ValueError, UnsupportedAlgorithm ...
        raise ValueError(f"not a valid ssh-ed25519 key ({type(exc).__name__})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an ed25519 key")
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def load_trusted_keys(path: Path) -> list[bytes]:
    """The raw public keys of an OpenSSH public key list, one a line (# comments allowed)."""
    try:
        lines = read_key_file(path, "trusted keys").decode().splitlines()
    except UnicodeDecodeError:
        raise VzError(f"trusted keys {path}: not text") from None
    keys = []
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            keys.append(_public_key_of(line))
        except ValueError as exc:
            raise VzError(f"trusted keys {path}:{number}: {exc}") from None
    if not keys:
        raise VzError(f"trusted keys {path}: no keys in it")
    return keys


def seal(payload: bytes, key: Any | None) -> bytes:
    """The payload as stored: signed by `key` when there is one."""
    if key is None:
        return payload
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    header = MAGIC + base64.b64encode(public) + b" " + base64.b64encode(key.sign(payload)) + b"\n"
    return header + payload


def signer_of(raw: bytes) -> str:
    """The public key (ssh-ed25519 base64 body) a stored object says signed it, or ""."""
    if not raw.startswith(MAGIC):
        return ""
    header = raw.partition(b"\n")[0][len(MAGIC) : MAX_HEADER]
    return header.split(b" ")[0].decode("ascii", "replace")


def unseal(raw: bytes, trusted: list[bytes] | None) -> bytes:
    """The payload of a stored object; SignatureError unless a trusted key signed exactly these
    bytes (when keys are trusted at all). Checked before anything parses the payload."""
    if not raw.startswith(MAGIC):
        if trusted is not None:
            raise SignatureError("it is not signed, and trusted keys are configured")
        return raw
    header, newline, payload = raw.partition(b"\n")
    if not newline or len(header) > MAX_HEADER:
        raise SignatureError("its signature line is malformed")
    if trusted is None:
        return payload
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        public_b64, value_b64 = header[len(MAGIC) :].split(b" ")
        public = base64.b64decode(public_b64, validate=True)
        value = base64.b64decode(value_b64, validate=True)
    except ValueError:
        raise SignatureError("its signature line is malformed") from None
    if public not in trusted:
        raise SignatureError("it is signed by a key that is not trusted")
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(value, payload)
    except (InvalidSignature, ValueError):
        raise SignatureError("its signature does not match its content") from None
    return payload
