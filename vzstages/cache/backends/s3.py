"""An S3 bucket (or any S3-compatible store) as a remote cache's backend, through boto3.

Every request has a deadline for the whole object (transfer.py): a server that trickles a byte
a minute or never answers costs seconds, not the build. botocore's errors become BackendError;
a store that cannot answer at all (no connection, timeouts) is `unreachable`.
"""

from __future__ import annotations

import contextlib
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..remote_config import RemoteConfig
from ..transfer import DeadlineExceeded, cut_off, deadline
from . import BackendError, Readable

# Per socket read; a whole object has its deadline from the caller.
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 10.0
_MISSING = ("404", "NoSuchKey", "NotFound")


# What S3 answers a conditional write whose name another writer holds (or is writing).
_TAKEN = ("PreconditionFailed", "ConditionalRequestConflict")


class S3Backend:
    def __init__(self, config: RemoteConfig):
        self.config = config
        self._client: Any = None

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
                    connect_timeout=CONNECT_TIMEOUT,
                    read_timeout=READ_TIMEOUT,
                    retries={"max_attempts": 2, "mode": "standard"},
                ),
            )
        return self._client

    def _key(self, name: str) -> str:
        return f"{self.config.prefix}{name}"

    @contextlib.contextmanager
    def _translated(self) -> Iterator[None]:
        """botocore's errors as BackendError, with no credentials in the message."""
        import botocore.exceptions

        gone = (
            botocore.exceptions.EndpointConnectionError,
            botocore.exceptions.ConnectTimeoutError,
            botocore.exceptions.ReadTimeoutError,
            DeadlineExceeded,
        )
        try:
            yield
        except gone as exc:
            raise BackendError(self._redacted(exc), unreachable=True) from None
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError, ValueError) as exc:
            raise BackendError(self._redacted(exc)) from None

    def _redacted(self, exc: BaseException) -> str:
        text = str(exc)
        endpoint = self.config.endpoint_url
        password = urllib.parse.urlsplit(endpoint).password if endpoint else None
        return text.replace(password, "***") if password else text

    @staticmethod
    def _missing(exc: Any) -> bool:
        return exc.response.get("Error", {}).get("Code") in _MISSING

    def exists(self, name: str) -> bool:
        import botocore.exceptions

        with self._translated():
            try:
                self.client.head_object(Bucket=self.config.bucket, Key=self._key(name))
                return True
            except botocore.exceptions.ClientError as exc:
                if self._missing(exc):
                    return False
                raise

    def read_small(self, name: str, limit: int, seconds: float) -> bytes | None:
        import botocore.exceptions

        with self._translated():
            try:
                response = self.client.get_object(Bucket=self.config.bucket, Key=self._key(name))
            except botocore.exceptions.ClientError as exc:
                if self._missing(exc):
                    return None
                raise
            body = response["Body"]
            try:
                with deadline(seconds, cut_off(body)):
                    raw: bytes = body.read(limit + 1)
            finally:
                body.close()
            return raw

    @contextlib.contextmanager
    def stream(self, name: str, seconds: float) -> Iterator[Readable]:
        with self._translated():
            response = self.client.get_object(Bucket=self.config.bucket, Key=self._key(name))
            body = response["Body"]
            try:
                with deadline(seconds, cut_off(body)):
                    yield body
            finally:
                body.close()

    def upload(self, name: str, path: Path) -> None:
        with self._translated():
            self.client.upload_file(str(path), self.config.bucket, self._key(name))

    def put(self, name: str, data: bytes) -> None:
        with self._translated():
            self.client.put_object(Bucket=self.config.bucket, Key=self._key(name), Body=data)

    def create(self, name: str, data: bytes) -> bool:
        import botocore.exceptions

        with self._translated():
            try:
                # S3's conditional write: a second writer gets 412 (or 409 while the first one's
                # write is still in flight) instead of replacing the object.
                self.client.put_object(
                    Bucket=self.config.bucket, Key=self._key(name), Body=data, IfNoneMatch="*"
                )
                return True
            except botocore.exceptions.ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in (
                    "PreconditionFailed",
                    "ConditionalRequestConflict",
                ):
                    return False
                raise

    def listing(self, folder: str) -> Iterator[tuple[str, float]]:
        prefix = self._key(f"{folder}/")
        with self._translated():
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.config.bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    yield str(item["Key"])[len(prefix) :], item["LastModified"].timestamp()

    def sweep(self, older_than: float) -> int:
        # A pusher killed mid-upload leaves its parts stored (and billed) until they are aborted.
        cutoff, swept = time.time() - older_than, 0
        with self._translated():
            paginator = self.client.get_paginator("list_multipart_uploads")
            for page in paginator.paginate(Bucket=self.config.bucket, Prefix=self._key("")):
                for upload in page.get("Uploads", []):
                    if upload["Initiated"].timestamp() < cutoff:
                        self.client.abort_multipart_upload(
                            Bucket=self.config.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                        )
                        swept += 1
        return swept

    def delete(self, name: str) -> None:
        with self._translated():
            self.client.delete_object(Bucket=self.config.bucket, Key=self._key(name))
