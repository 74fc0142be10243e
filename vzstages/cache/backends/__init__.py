"""Where a remote cache keeps its objects: one protocol, one file per backend.

The remote (cache/remote.py) decides what to read and write and checks everything it reads;
a backend only moves named objects (`blobs/<sha256>`, `records/<stage>-<key>.json`,
`archive/<name>.json`) and answers within a deadline. Every failure of the store itself is a
`BackendError` (`unreachable` when the store cannot answer at all), so the remote turns it into
one warning and a miss, whatever the backend. Adding a backend (GCS, an HTTP cache) is one file
here and one line in `open_backend`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol

from ..remote_config import RemoteConfig


class BackendError(OSError):
    """The store failed (not the object: a missing object is None or False)."""

    def __init__(self, message: str, unreachable: bool = False):
        super().__init__(message)
        self.unreachable = unreachable


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class Backend(Protocol):
    def exists(self, name: str) -> bool: ...

    def read_small(self, name: str, limit: int, seconds: float) -> bytes | None:
        """At most limit + 1 bytes of a small object within `seconds`; None if there is none."""
        ...

    def stream(self, name: str, seconds: float) -> AbstractContextManager[Readable]:
        """The object's bytes as they come; the whole object within `seconds`."""
        ...

    def upload(self, name: str, path: Path) -> None: ...

    def put(self, name: str, data: bytes) -> None:
        """Whole or not at all: a reader never sees part of an object."""
        ...

    def create(self, name: str, data: bytes) -> bool:
        """`put`, but only where no object has the name: False (nothing written) if one has.
        Two hosts pushing one record at once must not both win: a child pushed over the first
        one's parent would then name bytes the second overwrote."""
        ...

    def listing(self, folder: str) -> Iterator[tuple[str, float]]:
        """(name under `folder/`, when it was last written) of every complete object."""
        ...

    def delete(self, name: str) -> None: ...

    def sweep(self, older_than: float) -> int:
        """Remove what writers that died left half-written more than `older_than` seconds ago (a
        shared folder's partial files, S3's unfinished multipart uploads); how many went."""
        ...


def open_backend(config: RemoteConfig) -> Backend:
    if config.directory is not None:
        from .directory import DirectoryBackend

        return DirectoryBackend(config.directory)
    from .s3 import S3Backend

    return S3Backend(config)
