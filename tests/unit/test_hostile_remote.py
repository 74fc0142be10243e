"""A hostile or broken S3 endpoint of our own on loopback: it stalls, trickles, drops the
connection mid-body and answers junk. Each costs at most a miss and a warning, in bounded time,
never a traceback or a hang; after a failure that says the remote is gone, it is left alone."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from vzstages.cache import remote as remote_module
from vzstages.cache.backends import s3 as s3_backend
from vzstages.cache.remote import Remote
from vzstages.cache.remote_config import RemoteConfig
from vzstages.cache.store import Store

KEY = "a" * 32


class HostileServer:
    """Answers every HTTP request the way `mode` says."""

    def __init__(self, mode: str):
        self.mode = mode
        self.requests = 0
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(16)
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        self.stopped = threading.Event()
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        while not self.stopped.is_set():
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self.answer, args=(client,), daemon=True).start()

    def answer(self, client: socket.socket) -> None:
        with client:
            try:
                client.settimeout(5)
                client.recv(65536)
                self.requests += 1
                self.respond(client)
            except OSError:
                pass

    def respond(self, client: socket.socket) -> None:
        header = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n"
        if self.mode == "stall":
            self.stopped.wait(60)
        elif self.mode == "trickle":
            client.sendall(header.format(4000).encode())
            for _ in range(4000):
                if self.stopped.wait(0.5):
                    return
                client.sendall(b"[")
        elif self.mode == "drop":
            client.sendall(header.format(4000).encode() + b'{"format": 2, "stage": ')
        elif self.mode == "nesting":
            body = b"[" * 100_000
            client.sendall(header.format(len(body)).encode() + body)
        elif self.mode == "garbage":
            client.sendall(b"\x00\xffnot http at all\r\n\r\n" * 100)
        elif self.mode == "error":
            client.sendall(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 5\r\n\r\noops!")

    def stop(self) -> None:
        self.stopped.set()
        self.server.close()


@pytest.fixture
def fast_deadlines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(remote_module, "SMALL_OBJECT_SECONDS", 3.0)
    monkeypatch.setattr(s3_backend, "READ_TIMEOUT", 2.0)
    monkeypatch.setattr(s3_backend, "CONNECT_TIMEOUT", 2.0)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def hostile(request) -> Iterator[HostileServer]:
    server = HostileServer(request.param)
    yield server
    server.stop()


def remote_at(server: HostileServer, tmp_path: Path) -> Remote:
    store = Store(tmp_path / "cache")
    store.ensure()
    return Remote(RemoteConfig("s3://team-cache/ci", endpoint_url=server.url), store)


@pytest.mark.parametrize(
    "hostile", ["stall", "trickle", "drop", "nesting", "garbage", "error"], indirect=True
)
def test_a_hostile_endpoint_costs_a_miss_and_a_warning_in_bounded_time(hostile, fast_deadlines, tmp_path):
    remote = remote_at(hostile, tmp_path)
    started = time.monotonic()
    for stage in ("volume", "os", "packages", "system", "cleanup"):
        assert remote.lookup(stage, KEY) is None
        assert remote.archive_state("b" * 32) is None
        assert not remote.pull(stage, KEY, None, held=False)
    elapsed = time.monotonic() - started
    assert remote.warnings, "a hostile remote must be reported"
    # A stalling or trickling remote is given up after its first failures, not once per object.
    assert elapsed < 30, (elapsed, remote.warnings)
    if hostile.mode in ("stall", "trickle"):
        assert any("going on without it" in w for w in remote.warnings), remote.warnings


def test_a_junk_endpoint_url_is_a_clear_error():
    from vzstages.cache.remote_config import remote_config
    from vzstages.errors import VzError

    for junk in ("not a url", "ftp://host", "http://", "http://user:pw@"):
        with pytest.raises(VzError, match="remote endpoint"):
            remote_config("s3://bucket", endpoint_url=junk)
