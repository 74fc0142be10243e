from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
COMPAT = REPO.parent / "shared" / "compat" / "bootstrap-vz"

# Secrets are hashed with a cache's key; tests that only compare keys use this one.
TEST_KEY = b"vzstages-unit-tests-secret-key-0123456789"

KVM_MANIFEST = """\
name: test-{system.release}-{%Y}
provider:
  name: kvm
  virtio: [virtio_blk]
system:
  release: bookworm
  architecture: amd64
  bootloader: grub
  charmap: UTF-8
  locale: en_US
  timezone: UTC
  hostname: alpha
volume:
  backing: qcow2
  partitions:
    type: gpt
    root:
      filesystem: ext4
      size: 1GiB
packages:
  install: [less]
"""


# What each system test file costs, in seconds of one worker (CI's run of 2026-11-30). Files run
# heaviest first: pytest-xdist hands a whole file (--dist loadfile) to whichever worker is free,
# so the long ones start early and the short ones fill the end instead of one worker idling
# while the other finishes a long file. The arm64 file waits for its background build: it goes
# after the two heaviest, when that build is done; the unit tests come last, as filler.
FILE_COST = {
    "test_parity.py": 1310,
    "test_images.py": 1120,
    "test_uefi_arm64.py": 1100,
    "test_plugins_providers.py": 690,
    "test_cache.py": 660,
    "test_remote.py": 330,
    "test_ec2.py": 380,
    "test_chain.py": 250,
    "test_azure.py": 220,
    "test_failures.py": 90,
    "test_crash.py": 90,
    "test_trust.py": 50,
    "test_reproducible.py": 20,
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def cost(item: pytest.Item) -> int:
        return FILE_COST.get(item.path.name, 0) if item.path.parent.name == "system" else -1

    items.sort(key=cost, reverse=True)  # stable: a file's tests keep their order


@pytest.fixture
def write_manifest(tmp_path: Path):
    """Write a manifest (text, dedented) into tmp_path and return its path."""

    def write(text: str = KVM_MANIFEST, name: str = "m.yml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path

    return write


@pytest.fixture
def copy_manifest(tmp_path: Path):
    def copy(source: Path) -> Path:
        target = tmp_path / source.name
        shutil.copy(source, target)
        return target

    return copy


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """A moto server (EC2 and EBS) in its own process on 127.0.0.1; yields its endpoint URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or shutil.which("moto_server")
    if server is None:
        pytest.fail("moto_server is missing: install the dev extras (scripts/setup --dev)")
    process = subprocess.Popen(
        [server, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    pytest.fail(f"moto_server did not answer on {endpoint}")
                time.sleep(0.2)
        yield endpoint
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def moto_endpoint(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh moto state, and an environment where boto3 finds no credentials of the host's."""
    urllib.request.urlopen(urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST")).close()
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return moto_server


def fake_checkpoint(path: Path, backing: str | None = None, size: int = 0) -> None:
    """A qcow2 header (version 3, no data) naming `backing`, padded to `size` bytes: enough for
    the store's checks without running qemu-img."""
    import struct

    name = backing.encode() if backing else b""
    header = bytearray(512)
    header[0:4] = b"QFI\xfb"
    struct.pack_into(">IQI", header, 4, 3, 512 if name else 0, len(name))
    struct.pack_into(">I", header, 20, 16)  # cluster bits
    struct.pack_into(">I", header, 100, 104)  # header length; extensions end right after (zeros)
    data = bytes(header) + name
    path.write_bytes(data.ljust(size, b"\0"))


def fake_entry(store, stage: str, key: str, parent: tuple[str, str] | None = None, **fields) -> None:
    """A complete cache entry: a checkpoint backed by its parent's, and a record."""
    from vzstages.cache.record import Record, file_sha256

    parent_stage, parent_key = parent if parent else (None, None)
    backing = store.checkpoint(parent_stage, parent_key).name if parent else None
    checkpoint = store.checkpoint(stage, key)
    fake_checkpoint(checkpoint, backing, fields.pop("size", 0))
    fields.setdefault("digest", file_sha256(checkpoint))
    if parent and "parent_digest" not in fields:
        below = store.lookup(parent_stage, parent_key, disk=True)
        fields["parent_digest"] = below.digest if below else ""
    store.save_record(Record(stage, key, parent_key, parent_stage, fields.pop("inputs", {}), **fields))
