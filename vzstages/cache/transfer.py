"""Moving checkpoints to and from a remote: compressed with zstd, hashed as they stream, written
back sparse, and never larger than declared nor slower than a deadline for the whole object."""

from __future__ import annotations

import ctypes
import hashlib
import os
import queue
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from .backends import Readable

CHUNK = 1 << 22


def cut_off(body: object) -> Callable[[], None]:
    """What stops a transfer from another thread: shut the socket under the response down (a
    blocked read returns at once), then close the response. Closing alone does not unblock a
    read that a trickling server keeps alive."""

    def abort() -> None:
        raw = getattr(body, "_raw_stream", body)
        connection = getattr(raw, "_connection", None) or getattr(raw, "connection", None)
        sock = getattr(connection, "sock", None)
        if isinstance(sock, socket.socket):
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        close = getattr(body, "close", None)
        if callable(close):
            close()

    return abort


class NotZstd(ValueError):
    pass


class TooLarge(ValueError):
    """More bytes than the record declared: a bomb, or another object."""


class DeadlineExceeded(TimeoutError):
    pass


@contextmanager
def deadline(seconds: float, abort: Callable[[], object]) -> Iterator[threading.Event]:
    """Run the block with `abort` called (closing the connection under a blocked read) once
    `seconds` have passed: a server that trickles a byte a minute cannot hold a build. The
    event tells whether it fired; DeadlineExceeded is raised when the block ends after it."""
    fired = threading.Event()

    def expire() -> None:
        fired.set()
        with suppress(Exception):  # the transfer may be closing itself at this moment
            abort()

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    try:
        yield fired
    except Exception:
        if fired.is_set():
            raise DeadlineExceeded(f"no complete answer within {seconds:.0f}s") from None
        raise
    finally:
        timer.cancel()
    if fired.is_set():
        raise DeadlineExceeded(f"no complete answer within {seconds:.0f}s")


class HashingWriter:
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


class SparseWriter:
    """Writes a checkpoint back with its holes: all-zero blocks are skipped, not written."""

    BLOCK = 1 << 16
    ZERO = bytes(BLOCK)

    def __init__(self, out: IO[bytes]):
        self.out = out
        self.size = 0
        self.pending = b""
        self.sha = hashlib.sha256()  # of the checkpoint's bytes, holes included

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        if self.pending:  # complete the block the last write left open
            taken = self.BLOCK - len(self.pending)
            self.pending += view[:taken].tobytes()
            view = view[taken:]
            if len(self.pending) < self.BLOCK:
                return len(data)
            self._block(self.pending)
            self.pending = b""
        whole = len(view) - len(view) % self.BLOCK
        for offset in range(0, whole, self.BLOCK):
            self._block(view[offset : offset + self.BLOCK].tobytes())
        self.pending = view[whole:].tobytes()
        return len(data)

    def flush(self) -> None:
        pass

    def _block(self, block: bytes) -> None:
        self.sha.update(block)
        if block == self.ZERO:  # a memcmp: counting the zeros took most of a pull's time
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
        writer = HashingWriter(out)
        cctx = zstandard.ZstdCompressor(level=3, threads=-1)
        read, _ = cctx.copy_stream(src, writer, read_size=CHUNK, write_size=CHUNK)  # type: ignore[arg-type]
        out.flush()
    return writer.sha.hexdigest(), writer.size, int(read)


_libc = ctypes.CDLL(None, use_errno=True)
_SYNC_FILE_RANGE_WRITE = 2
WRITEBACK_EVERY = 64 << 20


def start_writeback(fd: int) -> None:
    """Start writing the file's dirty pages to disk without waiting (sync_file_range): the
    fsync that publishes a pulled checkpoint then finds little left to do."""
    with suppress(AttributeError, OSError):
        _libc.sync_file_range(fd, ctypes.c_int64(0), ctypes.c_int64(0), _SYNC_FILE_RANGE_WRITE)


class ThreadedWriter:
    """Hands what the decompressor produces to a thread that hashes and writes it, so the two
    run on two cores (zstd and sha256 both release the GIL). The declared size is checked here,
    as the bytes are produced, so a bomb stops before it is queued."""

    def __init__(self, sparse: SparseWriter, fd: int, limit: int):
        self.sparse, self.fd, self.limit = sparse, fd, limit
        self.produced = 0
        self.failure: BaseException | None = None
        self.chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=4)
        self.thread = threading.Thread(target=self._drain, name="vzstages-unpack", daemon=True)
        self.thread.start()

    def write(self, data: bytes) -> int:
        # Counted as the decompressor produces it: a small bomb stops at the declared size.
        self.produced += len(data)
        if self.produced > self.limit:
            raise TooLarge(f"unpacks to more than the {self.limit} bytes declared")
        if self.failure is not None:
            raise self.failure
        self.chunks.put(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def _drain(self) -> None:
        written = 0
        while (chunk := self.chunks.get()) is not None:
            if self.failure is not None:
                continue  # keep taking chunks, so the producer never blocks on a dead consumer
            try:
                self.sparse.write(chunk)
                written += len(chunk)
                if written >= WRITEBACK_EVERY:
                    start_writeback(self.fd)
                    written = 0
            except BaseException as exc:  # handed to the producer, which raises it
                self.failure = exc

    def stop(self) -> None:
        self.chunks.put(None)
        self.thread.join()

    def close(self) -> None:
        """Wait until every chunk is written; raise what the writing thread met."""
        self.stop()
        if self.failure is not None:
            raise self.failure
        self.sparse.close()


@dataclass(frozen=True)
class Received:
    sha256: str  # of the blob as it came
    size: int  # the blob's bytes
    raw_sha256: str  # of the checkpoint it unpacked to, holes included
    raw_size: int


def decompress(
    body: Readable, target: Path, size: int, raw_size: int, counted: Callable[[int], None]
) -> Received:
    """Unpack a zstd blob streaming from `body` into `target`, sparse. Reading stops as soon as
    the blob runs past `size` or unpacks past `raw_size` (TooLarge), or is not zstd (NotZstd);
    `counted` is told every chunk that came."""
    import zstandard

    sha = hashlib.sha256()
    received = 0
    with open(target, "wb") as out:
        sparse = SparseWriter(out)
        threaded = ThreadedWriter(sparse, out.fileno(), raw_size)
        try:
            writer = zstandard.ZstdDecompressor().stream_writer(threaded, write_size=CHUNK, closefd=False)  # type: ignore[arg-type]
            with writer as decompressor:
                try:
                    while chunk := body.read(CHUNK):
                        received += len(chunk)
                        counted(len(chunk))
                        if received > size:
                            raise TooLarge("is larger than its record says")
                        sha.update(chunk)
                        decompressor.write(chunk)
                except zstandard.ZstdError as exc:
                    raise NotZstd(f"is not zstd data: {exc}") from None
                decompressor.flush()
        except BaseException:
            threaded.stop()  # the file is a partial the caller removes
            raise
        threaded.close()
    return Received(sha.hexdigest(), received, sparse.sha.hexdigest(), sparse.size)
