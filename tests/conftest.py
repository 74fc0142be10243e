from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
COMPAT = REPO.parent / "shared" / "compat" / "bootstrap-vz"

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
