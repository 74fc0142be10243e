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
