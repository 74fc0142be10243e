"""`<name>.provenance.json`: an in-toto Statement v1 with a SLSA provenance v1 predicate, in a
DSSE envelope, signed with an OpenSSH ed25519 key (`--signing-key`, VZSTAGES_SIGNING_KEY).

The signature covers DSSE's pre-authentication encoding of the payload, so any DSSE verifier
(securesystemslib, in-toto, sigstore's) checks it with the public key alone; `keyid` is the
key's OpenSSH fingerprint (`ssh-keygen -lf key.pub`). Without a key the envelope carries no
signature, and `vzstages verify` says so.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from typing import Any

from ..cache.record import load_json

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "urn:vzstages:build:image:v1"
MAX_ENVELOPE_BYTES = 32 << 20


class ProvenanceError(ValueError):
    """An envelope that does not verify; the message says which check failed."""


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what the signature is over."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def keyid(public: bytes) -> str:
    """The OpenSSH fingerprint of a raw ed25519 public key, as `ssh-keygen -lf` prints it."""
    blob = b"".join(len(p).to_bytes(4, "big") + p for p in (b"ssh-ed25519", public))
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def envelope(statement: dict[str, Any], key: Any | None) -> dict[str, Any]:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    payload = json.dumps(statement, sort_keys=True, separators=(",", ":")).encode()
    signatures = []
    if key is not None:
        public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        signature = key.sign(pae(PAYLOAD_TYPE, payload))
        signatures.append({"keyid": keyid(public), "sig": base64.b64encode(signature).decode()})
    return {
        "payloadType": PAYLOAD_TYPE,
        "payload": base64.b64encode(payload).decode(),
        "signatures": signatures,
    }


def open_envelope(raw: bytes, trusted: Sequence[bytes] | None) -> tuple[dict[str, Any], str]:
    """The statement of an envelope and the keyid that signed it; ProvenanceError unless a
    trusted key signed it (when keys are given). The signature is checked over the payload's
    bytes before the payload is parsed."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if len(raw) > MAX_ENVELOPE_BYTES:
        raise ProvenanceError("the provenance is larger than a provenance can be")
    try:
        document = load_json(raw)
        payload = base64.b64decode(document["payload"], validate=True)
        payload_type = document["payloadType"]
        signatures = list(document.get("signatures") or [])
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ProvenanceError("the provenance is not a DSSE envelope") from None
    if payload_type != PAYLOAD_TYPE:
        raise ProvenanceError(f"the envelope holds {payload_type!r}, not an in-toto statement")
    signer = ""
    if trusted is not None:
        if not signatures:
            raise ProvenanceError("the provenance is not signed")
        by_id = {keyid(k): k for k in trusted}
        for signature in signatures:
            public = by_id.get(str(signature.get("keyid", ""))) if isinstance(signature, dict) else None
            if public is None:
                continue
            try:
                value = base64.b64decode(str(signature.get("sig", "")), validate=True)
                Ed25519PublicKey.from_public_bytes(public).verify(value, pae(payload_type, payload))
            except (InvalidSignature, ValueError):
                raise ProvenanceError(
                    f"bad signature by {keyid(public)}: the provenance was changed"
                ) from None
            signer = keyid(public)
            break
        else:
            ids = ", ".join(str(s.get("keyid", "?")) for s in signatures if isinstance(s, dict))
            raise ProvenanceError(f"untrusted key: the provenance is signed by {ids or 'no key'}")
    try:
        statement = load_json(payload)
    except ValueError:
        raise ProvenanceError("the provenance's payload is not JSON") from None
    if not isinstance(statement, dict) or statement.get("_type") != STATEMENT_TYPE:
        raise ProvenanceError("the provenance's payload is not an in-toto Statement v1")
    return statement, signer
