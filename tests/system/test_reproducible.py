"""Same key, same bytes: what is reproducible today, checked byte for byte between two builds
from different caches, paths, umasks, time zones, locales, host names and numbers of CPUs."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from vzstages.build import load_plan
from vzstages.cache.record import file_sha256

from ..conftest import REPO
from .conftest import vzstages, with_workspace

pytestmark = pytest.mark.system


def first_difference(a: Path, b: Path) -> str:
    out = subprocess.run(["cmp", str(a), str(b)], capture_output=True, text=True)
    return (out.stdout + out.stderr).strip()


@pytest.mark.parametrize("name", ["kvm.yml", "ec2.yml", "azure.yml", "kvm-trixie-extlinux.yml"])
def test_the_volume_stage_is_byte_identical_from_any_caller(tmp_path, system_host, name):
    """GPT (BIOS boot, EFI system), msdos and their filesystems: every identity from the key."""
    checkpoints = []
    for run, hardened in (("one", False), ("two", True)):
        manifest = with_workspace(
            REPO / "manifests" / name, tmp_path / f"build-{run}", tmp_path / f"{run}.yml"
        )
        cache = tmp_path / f"cache-{run}"
        vzstages("build", "--no-publish", str(manifest), "volume", cache=cache, hardened=hardened)
        plan = load_plan(manifest, cache, publish=False)
        volume = plan.stage("volume")
        checkpoints.append(plan.store.checkpoint(volume.name, volume.key))
        record = plan.store.lookup(volume.name, volume.key, disk=True)
        assert record is not None and record.digest == file_sha256(checkpoints[-1])
    one, two = checkpoints
    assert one.name == two.name  # the same key
    assert file_sha256(one) == file_sha256(two), f"{name}: {first_difference(one, two)}"
