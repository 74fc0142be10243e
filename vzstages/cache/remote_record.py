"""What a remote cache holds, as this host reads it: records and archive states, parsed only
after their size is bounded and (when keys are trusted) their signature checked over the bytes."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..errors import VzError
from .record import Record, RecordError, load_json, valid_entry
from .signing import SignatureError, signer_of, unseal

# 2: objects signed over their bytes (signing.py), records naming checkpoint and parent digests.
FORMAT = 2
CODEC = "zstd"
# Nothing the remote says is believed beyond these.
MAX_BLOB = 256 << 30
MAX_ARCHIVE_STATE_BYTES = 4096
_SHA256 = re.compile(r"[0-9a-f]{64}", re.ASCII)
_ARCHIVE_NAME = re.compile(r"[0-9a-f]{32}", re.ASCII)


class RemoteError(VzError):
    """The remote cache cannot be used for this entry (unreachable, missing, not trustworthy)."""


@dataclass(frozen=True)
class RemoteRecord:
    stage: str
    key: str
    parent: str | None
    parent_stage: str | None
    sha256: str  # of the blob (the compressed checkpoint)
    size: int  # the blob's bytes
    raw_size: int  # the checkpoint's bytes
    record: Record  # the local record of the pushing host (facts, timings ...)
    created: float = 0.0
    signer: str = ""  # the key the record says signed it (verified when keys are trusted)

    @property
    def name(self) -> str:
        return f"{self.stage}-{self.key}"

    def document(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "stage": self.stage,
            "key": self.key,
            "parent": self.parent,
            "parent_stage": self.parent_stage,
            "blob": {"sha256": self.sha256, "size": self.size, "raw_size": self.raw_size, "codec": CODEC},
            "record": self.record.document(),
            "created": self.created,
        }

    @classmethod
    def parse(cls, raw: bytes, stage: str, key: str, trusted: list[bytes] | None) -> RemoteRecord:
        """A remote record for `<stage>-<key>`, or RemoteError saying why it cannot be one."""
        try:
            document = load_json(unseal(raw, trusted))
        except SignatureError as exc:
            raise RemoteError(str(exc)) from None
        except ValueError as exc:
            raise RemoteError(f"not JSON ({exc})") from None
        if not isinstance(document, dict):
            raise RemoteError("not a JSON object")
        if document.get("format") != FORMAT:
            raise RemoteError(f"format {document.get('format')!r}, not {FORMAT}")
        if document.get("stage") != stage or document.get("key") != key:
            raise RemoteError("its stage and key are not those asked for")
        parent, parent_stage = document.get("parent"), document.get("parent_stage")
        if not (parent is None and parent_stage is None) and not (
            isinstance(parent, str) and isinstance(parent_stage, str) and valid_entry(parent_stage, parent)
        ):
            raise RemoteError("its parent is not a stage and key")
        blob = document.get("blob")
        if not isinstance(blob, dict) or blob.get("codec") != CODEC:
            raise RemoteError("no blob of a known codec")
        sha, size, raw_size = blob.get("sha256"), blob.get("size"), blob.get("raw_size")
        if not (isinstance(sha, str) and _SHA256.fullmatch(sha)):
            raise RemoteError("a malformed blob digest")
        if not all(_size_ok(n) for n in (size, raw_size)):
            raise RemoteError("a blob size out of bounds")
        assert isinstance(size, int) and isinstance(raw_size, int)
        try:
            record = Record.from_document(document.get("record"), stage, key)
        except RecordError as exc:
            raise RemoteError(f"its local record is malformed: {exc}") from None
        if record.parent != parent or record.parent_stage != parent_stage:
            raise RemoteError("its local record names another parent")
        if not record.digest or (parent is not None and not record.parent_digest):
            raise RemoteError("its local record does not name its checkpoint's and its parent's digests")
        created = document.get("created", 0.0)
        if isinstance(created, bool) or not isinstance(created, int | float):
            raise RemoteError("a malformed creation time")
        signer = signer_of(raw)
        return cls(stage, key, parent, parent_stage, sha, size, raw_size, record, float(created), signer)


def parse_archive_state(raw: bytes, trusted: list[bytes] | None) -> dict[str, Any]:
    """{"url", "fetched", "digest"} from a remote archive state, or RemoteError saying why not."""
    if len(raw) > MAX_ARCHIVE_STATE_BYTES:
        raise RemoteError("an archive state larger than one can be")
    try:
        document = load_json(unseal(raw, trusted))
    except SignatureError as exc:
        raise RemoteError(f"archive state: {exc}") from None
    except ValueError as exc:
        raise RemoteError(f"an archive state that is not JSON ({exc})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise RemoteError("not an archive state of a known format")
    url, fetched, digest = document.get("url"), document.get("fetched"), document.get("digest")
    if not (
        isinstance(url, str)
        and len(url) < 2048
        and isinstance(digest, str)
        and _ARCHIVE_NAME.fullmatch(digest)
        and isinstance(fetched, int | float)
        and not isinstance(fetched, bool)
    ):
        raise RemoteError("an archive state with malformed fields")
    return {"url": url, "fetched": float(fetched), "digest": digest}


def _size_ok(number: Any) -> bool:
    return isinstance(number, int) and not isinstance(number, bool) and 0 < number <= MAX_BLOB
