"""A shared remote cache in S3 (or any S3-compatible store): CI runners and engineers build each
stage once between them.

Layout under s3://BUCKET/PREFIX/:

    blobs/<sha256>                 a checkpoint, zstd-compressed; named by the sha256 of its bytes
    records/<stage>-<key>.json     what the blob is: its digest and sizes, the parent's key, the
                                   local record (facts ...), the format version, and optionally an
                                   ed25519 signature by the pushing host
    archive/<digest of URL>.json   the newest state of an archive suite any host has seen (its
                                   InRelease digest and when it was fetched), so that all hosts
                                   compute the same keys for the stages that download

Push: blob first, record last, nothing uploaded that is already there; so a push cut short
leaves at most a blob without a record, which no pull takes for a hit.

Pull: the store is untrusted. A record must parse field by field, name the stage, key and parent
that were asked for, and (with trusted keys configured) carry a valid signature by one of them,
else it is a miss with a warning. Its blob is streamed through sha256 and decompressed into a
temporary file beside the checkpoints, with the declared sizes as caps; its qcow2 header must name
exactly the parent's checkpoint as backing file, and `qemu-img check` must pass. Only then is it
published into the local store, exactly as a local build publishes a stage.

The remote is an accelerator: any failure (unreachable, a timeout, a tampered object) is a
warning, and the build goes on locally.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ..errors import VzError
from ..runid import run_id
from ..units import human_size
from . import qcow2
from .record import MAX_RECORD_BYTES, Record, RecordError, load_json, valid_entry
from .store import Store

log = logging.getLogger("vzstages.progress")

FORMAT = 1
CODEC = "zstd"
CHUNK = 1 << 22
# Nothing the remote says is believed beyond these.
MAX_BLOB = 256 << 30
MODES = ("readwrite", "read", "write", "off")
_URL = re.compile(r"s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:/(?P<prefix>[\w./-]*))?", re.ASCII)
_SHA256 = re.compile(r"[0-9a-f]{64}", re.ASCII)
_RECORD = re.compile(r"(?P<stage>[a-z]+)-(?P<key>[0-9a-f]{32})\.json", re.ASCII)
_ARCHIVE_NAME = re.compile(r"[0-9a-f]{32}", re.ASCII)
MAX_ARCHIVE_STATE_BYTES = 4096


class RemoteError(VzError):
    """The remote cache cannot be used for this entry (unreachable, missing, not trustworthy)."""


# --- configuration -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RemoteConfig:
    """Where the remote cache is and what this host may do with it (per host, never per manifest)."""

    url: str
    mode: str = "readwrite"
    endpoint_url: str | None = None
    signing_key: Path | None = None  # an OpenSSH ed25519 private key: pushes are signed with it
    trusted_keys: Path | None = None  # OpenSSH public keys, one a line: pulls need a signature by one

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
    if not _URL.fullmatch(url):
        raise VzError(f"remote cache {url!r}: expected s3://BUCKET or s3://BUCKET/PREFIX")
    signing = signing_key or env("VZSTAGES_REMOTE_SIGNING_KEY")
    trusted = trusted_keys or env("VZSTAGES_REMOTE_TRUSTED_KEYS")
    config = RemoteConfig(
        url=url,
        mode=mode,
        endpoint_url=endpoint_url or env("VZSTAGES_REMOTE_ENDPOINT") or None,
        signing_key=Path(signing) if signing else None,
        trusted_keys=Path(trusted) if trusted else None,
    )
    # Key files are read now: a typo is a clear error before any work, not a warning per stage.
    if config.signing_key:
        load_signing_key(config.signing_key)
    if config.trusted_keys:
        load_trusted_keys(config.trusted_keys)
    return config


# --- signatures ---------------------------------------------------------------------------------


def load_signing_key(path: Path) -> Any:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_ssh_private_key

    try:
        key = load_ssh_private_key(path.read_bytes()[:65536], password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise VzError(
            f"remote signing key {path}: {exc} (make one with ssh-keygen -t ed25519 -N '')"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise VzError(f"remote signing key {path}: not an ed25519 key (ssh-keygen -t ed25519)")
    return key


def load_trusted_keys(path: Path) -> list[bytes]:
    """The raw public keys in an OpenSSH public key list (`ssh-ed25519 AAAA... comment`)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_ssh_public_key

    try:
        lines = path.read_bytes()[: 1 << 20].decode().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise VzError(f"remote trusted keys {path}: {exc}") from None
    keys = []
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            key = load_ssh_public_key(" ".join(line.split()[:2]).encode())
        except (ValueError, TypeError, IndexError) as exc:
            raise VzError(f"remote trusted keys {path}:{number}: {exc}") from None
        if not isinstance(key, Ed25519PublicKey):
            raise VzError(f"remote trusted keys {path}:{number}: not an ed25519 key")
        keys.append(key.public_bytes(Encoding.Raw, PublicFormat.Raw))
    if not keys:
        raise VzError(f"remote trusted keys {path}: no keys in it")
    return keys


def _signed_part(document: dict[str, Any]) -> bytes:
    unsigned = {k: v for k, v in document.items() if k != "signature"}
    return json.dumps(unsigned, sort_keys=True, separators=(",", ":")).encode()


def sign(document: dict[str, Any], key: Any) -> dict[str, Any]:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    signature = key.sign(_signed_part(document))
    return {
        **document,
        "signature": {
            "public_key": base64.b64encode(public).decode(),
            "value": base64.b64encode(signature).decode(),
        },
    }


def signature_problem(document: dict[str, Any], trusted: list[bytes]) -> str | None:
    """None if a trusted key signed the document, else why it is not trusted."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    signature = document.get("signature")
    if not isinstance(signature, dict):
        return "it is not signed, and trusted keys are configured"
    try:
        public = base64.b64decode(str(signature.get("public_key")), validate=True)
        value = base64.b64decode(str(signature.get("value")), validate=True)
    except ValueError:
        return "its signature is malformed"
    if public not in trusted:
        return "it is signed by a key that is not trusted"
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(value, _signed_part(document))
    except (InvalidSignature, ValueError):
        return "its signature does not match its content"
    return None


# --- records ------------------------------------------------------------------------------------


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
            document = load_json(raw)
        except ValueError as exc:
            raise RemoteError(f"not JSON ({exc})") from None
        if not isinstance(document, dict):
            raise RemoteError("not a JSON object")
        if trusted is not None:
            problem = signature_problem(document, trusted)
            if problem:
                raise RemoteError(problem)
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
        return cls(stage, key, parent, parent_stage, sha, size, raw_size, record, float(created))


def parse_archive_state(raw: bytes, trusted: list[bytes] | None) -> dict[str, Any]:
    """{"url", "fetched", "digest"} from a remote archive state, or RemoteError saying why not."""
    if len(raw) > MAX_ARCHIVE_STATE_BYTES:
        raise RemoteError("an archive state larger than one can be")
    try:
        document = load_json(raw)
    except ValueError as exc:
        raise RemoteError(f"an archive state that is not JSON ({exc})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise RemoteError("not an archive state of a known format")
    if trusted is not None:
        problem = signature_problem(document, trusted)
        if problem:
            raise RemoteError(f"archive state: {problem}")
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


# --- transfer helpers ---------------------------------------------------------------------------


class _HashingWriter:
    def __init__(self, out: IO[bytes]):
        self.out = out
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self.out.write(data)

    def flush(self) -> None:
        self.out.flush()


class _SparseWriter:
    """Writes a checkpoint back with its holes: all-zero blocks are skipped, not written."""

    BLOCK = 1 << 16

    def __init__(self, out: IO[bytes]):
        self.out = out
        self.size = 0
        self.pending = b""
        self.sha = hashlib.sha256()  # of the checkpoint's bytes, holes included

    def write(self, data: bytes) -> int:
        self.pending += data
        whole = len(self.pending) - len(self.pending) % self.BLOCK
        for offset in range(0, whole, self.BLOCK):
            self._block(self.pending[offset : offset + self.BLOCK])
        self.pending = self.pending[whole:]
        return len(data)

    def flush(self) -> None:
        pass

    def _block(self, block: bytes) -> None:
        self.sha.update(block)
        if block.count(0) == len(block):
            self.out.seek(len(block), os.SEEK_CUR)
        else:
            self.out.write(block)
        self.size += len(block)

    def close(self) -> None:
        if self.pending:
            self.sha.update(self.pending)
            self.out.write(self.pending)
            self.size += len(self.pending)
        self.out.truncate(self.size)


def compress(source: Path, target: Path) -> tuple[str, int, int]:
    """zstd-compress a checkpoint; (sha256 of the blob, blob size, checkpoint size)."""
    import zstandard

    with open(source, "rb") as src, open(target, "wb") as out:
        writer = _HashingWriter(out)
        cctx = zstandard.ZstdCompressor(level=3, threads=-1)
        read, _ = cctx.copy_stream(src, writer, read_size=CHUNK, write_size=CHUNK)  # type: ignore[arg-type]
        out.flush()
    return writer.sha.hexdigest(), writer.size, int(read)


@dataclass
class Counters:
    sent: int = 0
    received: int = 0
    pushed: list[str] = field(default_factory=list)
    pulled: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"remote cache: pulled {len(self.pulled)} ({human_size(self.received)}), "
            f"pushed {len(self.pushed)} ({human_size(self.sent)})"
        )


# --- the remote ---------------------------------------------------------------------------------


class Remote:
    def __init__(self, config: RemoteConfig, store: Store):
        self.config = config
        self.store = store
        self.counters = Counters()
        self.warnings: list[str] = []
        self._client: Any = None
        self._trusted = load_trusted_keys(config.trusted_keys) if config.trusted_keys else None
        self._signing = load_signing_key(config.signing_key) if config.signing_key else None
        self._records: dict[str, RemoteRecord | None] = {}
        self._unreachable = False

    # --- plumbing ---
    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            session = boto3.session.Session()
            self._client = session.client(
                "s3",
                endpoint_url=self.config.endpoint_url,
                region_name=session.region_name or "us-east-1",
                config=Config(
                    connect_timeout=5, read_timeout=60, retries={"max_attempts": 2, "mode": "standard"}
                ),
            )
        return self._client

    def _object(self, kind: str, name: str) -> str:
        return f"{self.config.prefix}{kind}/{name}"

    def warn(self, message: str) -> None:
        text = f"warning: remote cache: {message}"
        if text not in self.warnings:
            self.warnings.append(text)
            log.warning("%s", text)

    @contextlib.contextmanager
    def guarded(self, what: str) -> Iterator[None]:
        """Turn any failure of the remote into a warning; the caller carries on locally."""
        import botocore.exceptions

        try:
            yield
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError, OSError) as exc:
            if isinstance(
                exc, botocore.exceptions.EndpointConnectionError | botocore.exceptions.ConnectTimeoutError
            ):
                self._unreachable = True
            self.warn(f"{what} failed ({exc}); building locally")
            raise RemoteError(str(exc)) from None
        except RemoteError as exc:
            self.warn(f"{what}: {exc}")
            raise

    def _exists(self, kind: str, name: str) -> bool:
        import botocore.exceptions

        try:
            self.client.head_object(Bucket=self.config.bucket, Key=self._object(kind, name))
            return True
        except botocore.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    # --- reading ---
    def lookup(self, stage: str, key: str) -> RemoteRecord | None:
        """The remote's record for this entry, if there is one that can be trusted."""
        name = f"{stage}-{key}"
        if name in self._records:
            return self._records[name]
        found: RemoteRecord | None = None
        if self.config.can_read and not self._unreachable and valid_entry(stage, key):
            with contextlib.suppress(RemoteError), self.guarded(f"looking up {name}"):
                found = self._fetch_record(stage, key)
        self._records[name] = found
        return found

    def _read_small(self, key: str, limit: int) -> bytes | None:
        """A small object (a record, an archive state), read to at most limit + 1 bytes so the
        caller can tell one that is too big; None if there is no such object."""
        import botocore.exceptions

        try:
            response = self.client.get_object(Bucket=self.config.bucket, Key=key)
        except botocore.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        body = response["Body"]
        raw: bytes = body.read(limit + 1)
        body.close()
        return raw

    def _fetch_record(self, stage: str, key: str) -> RemoteRecord | None:
        raw = self._read_small(self._object("records", f"{stage}-{key}.json"), MAX_RECORD_BYTES)
        if raw is None:
            return None
        if len(raw) > MAX_RECORD_BYTES:
            raise RemoteError(f"record {stage}-{key} is larger than a record can be")
        self.counters.received += len(raw)
        return RemoteRecord.parse(raw, stage, key, self._trusted)

    def chain(self, stage: str, key: str) -> list[RemoteRecord] | None:
        """The remote records needed to have this entry locally, the entry's own first and its
        ancestors after it, up to the first one this cache holds with the very bytes the
        remote's chain was built over; None if the remote has no whole chain for it.

        The remote's chain wins: a local ancestor with other bytes (built here while another
        host built and pushed the same key) is replaced by the remote's, with what was built
        on it, so hosts converge on one chain and never stack an overlay on other bytes."""
        needed: list[RemoteRecord] = []
        current: tuple[str, str] | None = (stage, key)
        wanted = ""  # the digest the entry below was built over
        while current is not None:
            if wanted and self._have(current, wanted):
                return needed
            record = self.lookup(*current)
            if record is None:
                return None
            if wanted and record.record.digest != wanted:
                below = needed[-1]
                self.warn(
                    f"{below.name} was built over {record.stage} bytes sha256:{wanted[:12]}, but the "
                    f"remote's {record.name} is sha256:{record.record.digest[:12]}: no whole chain; a miss"
                )
                return None
            needed.append(record)
            if len(needed) > 16:
                return None  # no real chain is this long
            wanted = record.record.parent_digest
            current = (record.parent_stage, record.parent) if record.parent and record.parent_stage else None
        return needed

    def _have(self, entry: tuple[str, str], digest: str) -> bool:
        """This cache holds the entry with exactly these bytes, on a sound chain."""
        local = self.store.lookup(*entry, disk=True)
        return local is not None and local.digest == digest and self.store.chain_problem(local) is None

    def pull_size(self, stage: str, key: str) -> int | None:
        needed = self.chain(stage, key)
        return None if needed is None else sum(r.size for r in needed)

    def pull(self, stage: str, key: str, parent: tuple[str, str] | None, held: bool = True) -> bool:
        """Bring the entry (and its missing ancestors) into the local store; False on a miss.
        `held`: the caller holds the entry's build lock (ancestors are locked here)."""
        if not self.config.can_read or self._unreachable:
            return False
        needed = self.chain(stage, key)
        if not needed:
            return False
        top = needed[0]
        if (top.parent_stage, top.parent) != (parent or (None, None)):
            self.warn(f"{top.name} names parent {top.parent_stage}-{top.parent}, not the plan's; a miss")
            return False
        # Parents first: a checkpoint is published only once what it is backed by is there.
        for record in reversed(needed):
            own = held and record is top
            try:
                with (
                    self.guarded(f"pulling {record.name}"),
                    contextlib.nullcontext() if own else self.store.lock(record.stage, record.key),
                ):
                    if not self._have((record.stage, record.key), record.record.digest):
                        self._pull_one(record)
            except RemoteError:
                return False
        return True

    def _pull_one(self, record: RemoteRecord) -> None:
        store = self.store
        tmp = store.temp_checkpoint(record.stage, record.key)
        expected_backing = None
        if record.parent and record.parent_stage:
            expected_backing = store.checkpoint(record.parent_stage, record.parent).name
        started = time.monotonic()
        try:
            self._download(record, tmp)
            problem = qcow2.check_backing(tmp, expected_backing)
            if problem:
                raise RemoteError(f"blob of {record.name} is not the checkpoint it claims: {problem}")
            check = subprocess.run(
                ["qemu-img", "check", "-q", "-f", "qcow2", str(tmp)],
                capture_output=True,
                text=True,
                check=False,
            )
            if check.returncode != 0:
                raise RemoteError(
                    f"blob of {record.name} fails qemu-img check: {(check.stdout + check.stderr).strip()}"
                )
            below = None
            if record.parent and record.parent_stage:
                below = store.lookup(record.parent_stage, record.parent, disk=True)
            if expected_backing and (below is None or below.digest != record.record.parent_digest):
                raise RemoteError(f"{record.name} was built over other bytes than this cache's parent")
            replaced = store.lookup(record.stage, record.key, disk=True)
            if replaced is not None:
                log.warning("%s: replacing this cache's copy with the remote's", record.name)
            store.publish_checkpoint(tmp, record.stage, record.key, record.record.digest)
        finally:
            tmp.unlink(missing_ok=True)
        local = Record.from_document(record.record.document(), record.stage, record.key)
        local.origin = {"remote": self.config.url, "blob": record.sha256}
        store.save_record(local)
        self.counters.pulled.append(record.name)
        log.info(
            "%-8s pulled %s from the remote cache in %.1fs",
            record.stage,
            human_size(record.size),
            time.monotonic() - started,
        )

    def _download(self, record: RemoteRecord, target: Path) -> None:
        import zstandard

        response = self.client.get_object(Bucket=self.config.bucket, Key=self._object("blobs", record.sha256))
        body = response["Body"]
        sha = hashlib.sha256()
        received = 0
        dctx = zstandard.ZstdDecompressor()
        with open(target, "wb") as out:
            sparse = _SparseWriter(out)
            writer = dctx.stream_writer(sparse, write_size=CHUNK, closefd=False)  # type: ignore[arg-type]
            with writer as decompressor:
                try:
                    while chunk := body.read(CHUNK):
                        received += len(chunk)
                        if received > record.size:
                            raise RemoteError(f"blob of {record.name} is larger than its record says")
                        sha.update(chunk)
                        decompressor.write(chunk)
                        if sparse.size > record.raw_size:
                            raise RemoteError(f"blob of {record.name} unpacks larger than its record says")
                except zstandard.ZstdError as exc:
                    raise RemoteError(f"blob of {record.name} is not zstd data: {exc}") from None
                finally:
                    body.close()
                    self.counters.received += received
                decompressor.flush()
            sparse.close()
        if sha.hexdigest() != record.sha256 or received != record.size:
            raise RemoteError(f"blob of {record.name} does not match its digest (tampered or cut short)")
        if sparse.sha.hexdigest() != record.record.digest:
            raise RemoteError(f"blob of {record.name} unpacks to other bytes than its record names")
        if sparse.size != record.raw_size:
            raise RemoteError(f"blob of {record.name} unpacks to {sparse.size} bytes, not {record.raw_size}")

    # --- writing ---
    def push(self, stage: str, key: str) -> bool:
        """Push a local entry: blob first, record last; nothing that is already there."""
        if not self.config.can_write or self._unreachable:
            return False
        local = self.store.lookup(stage, key, disk=True)
        if local is None or local.origin or self.store.chain_problem(local):
            return False  # not here (whole), or pulled from a remote (which has it)
        name = f"{stage}-{key}"
        try:
            with self.guarded(f"pushing {name}"):
                if self._exists("records", f"{name}.json"):
                    return False
                if not self._parent_matches(local):
                    return False
                self._push_one(local)
                return True
        except RemoteError:
            return False

    def _parent_matches(self, local: Record) -> bool:
        """The remote holds consistent chains only: an entry goes up only over a remote parent
        with the very bytes it was built over (another host may have pushed that key first)."""
        if local.parent is None or local.parent_stage is None:
            return True
        self._records.pop(f"{local.parent_stage}-{local.parent}", None)  # it may have been pushed since
        parent = self.lookup(local.parent_stage, local.parent)
        if parent is not None and parent.record.digest == local.parent_digest:
            return True
        self.warn(
            f"{local.stage}-{local.key[:12]} not pushed: it was built over a {local.parent_stage} "
            "that is not the remote's (another host pushed that key first; hosts converge on its chain)"
        )
        return False

    def _push_one(self, local: Record) -> None:
        store = self.store
        checkpoint = store.checkpoint(local.stage, local.key)
        blob = store.stages / f".push-{local.stage}-{local.key}.{run_id()}.zst"
        started = time.monotonic()
        try:
            sha, size, raw_size = compress(checkpoint, blob)
            if not self._exists("blobs", sha):
                self.client.upload_file(str(blob), self.config.bucket, self._object("blobs", sha))
                self.counters.sent += size
        finally:
            blob.unlink(missing_ok=True)
        remote = RemoteRecord(
            local.stage, local.key, local.parent, local.parent_stage, sha, size, raw_size, local, time.time()
        )
        document = remote.document()
        if self._signing is not None:
            document = sign(document, self._signing)
        body = json.dumps(document, sort_keys=True, indent=1).encode()
        self.client.put_object(
            Bucket=self.config.bucket, Key=self._object("records", f"{remote.name}.json"), Body=body
        )
        self.counters.sent += len(body)
        self.counters.pushed.append(remote.name)
        self._records[remote.name] = remote
        log.info(
            "%-8s pushed %s to the remote cache in %.1fs",
            local.stage,
            human_size(size),
            time.monotonic() - started,
        )

    # --- the archive's state, shared ---
    def archive_state(self, name: str) -> dict[str, Any] | None:
        """The newest state of one archive suite (`name`: the digest of its URL) that a host
        published, as {"url", "fetched", "digest"}; None if there is none that can be trusted."""
        if not self.config.can_read or self._unreachable or not _ARCHIVE_NAME.fullmatch(name):
            return None
        try:
            with self.guarded(f"reading the archive state {name}"):
                raw = self._read_small(self._object("archive", f"{name}.json"), MAX_ARCHIVE_STATE_BYTES)
                return None if raw is None else parse_archive_state(raw, self._trusted)
        except RemoteError:
            return None

    def publish_archive_state(self, name: str, state: dict[str, Any]) -> None:
        if not self.config.can_write or self._unreachable or not _ARCHIVE_NAME.fullmatch(name):
            return
        document = {"format": FORMAT, **state}
        if self._signing is not None:
            document = sign(document, self._signing)
        with contextlib.suppress(RemoteError), self.guarded(f"publishing the archive state {name}"):
            self.client.put_object(
                Bucket=self.config.bucket,
                Key=self._object("archive", f"{name}.json"),
                Body=json.dumps(document, sort_keys=True).encode(),
            )

    # --- listing and collecting ---
    def entries(self) -> list[tuple[RemoteRecord, float]]:
        """Every trustworthy record on the remote, with when it was last written."""
        found = []
        paginator = self.client.get_paginator("list_objects_v2")
        prefix = self._object("records", "")
        for page in paginator.paginate(Bucket=self.config.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                match = _RECORD.fullmatch(item["Key"][len(prefix) :])
                if not match or not valid_entry(match["stage"], match["key"]):
                    continue
                record = self.lookup(match["stage"], match["key"])
                if record is not None:
                    found.append((record, item["LastModified"].timestamp()))
        return found

    def delete(self, record: RemoteRecord, blob_in_use: bool) -> None:
        """Record first: without it the blob is no longer an entry."""
        self.client.delete_object(
            Bucket=self.config.bucket, Key=self._object("records", f"{record.name}.json")
        )
        if not blob_in_use:
            self.client.delete_object(Bucket=self.config.bucket, Key=self._object("blobs", record.sha256))
