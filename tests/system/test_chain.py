"""A chain of overlays is linked by content: no mix of machines, races or damaged blobs can stack
a checkpoint on bytes it was not built on (the image would fail fsck while the build says done).
Two caches on one machine stand for two machines; the remote is a real S3 API on loopback."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path

import boto3
import pytest

from vzstages.build import load_plan
from vzstages.cache.record import file_sha256
from vzstages.cache.store import Store

from ..conftest import REPO
from .conftest import copy_stages, nothing_left, vzstages, with_workspace

pytestmark = pytest.mark.system

IMAGE = "debian-bookworm-amd64-kvm.qcow2"


def records(cache: Path, manifest: Path) -> dict[str, dict]:
    """The records of the manifest's stages in a cache, by stage."""
    plan = load_plan(manifest, cache)
    found = {}
    for stage in plan.stages:
        path = plan.store.record_path(stage.name, stage.key)
        if path.exists():
            found[stage.name] = json.loads(path.read_text())
    return found


def fsck_clean(image: Path, tmp: Path) -> None:
    """An independent check of the image: qemu-img to raw, e2fsck -fn of its root partition."""
    raw = tmp / "check.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(image), str(raw)], check=True)
    table = json.loads(subprocess.run(["sfdisk", "--json", str(raw)], capture_output=True, check=True).stdout)
    root = table["partitiontable"]["partitions"][-1]
    loop = subprocess.run(
        ["losetup", "--find", "--show", "--read-only", "-o", str(root["start"] * 512), str(raw)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    try:
        check = subprocess.run(["e2fsck", "-f", "-n", loop], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
    finally:
        subprocess.run(["losetup", "--detach", loop], check=True)
        raw.unlink()


def test_two_machines_racing_converge_on_one_chain_and_never_stack_on_other_bytes(
    cache, workspace, tmp_path, remote
):
    # Machine A (the session's cache) builds kvm.yml and pushes it.
    manifest_a = with_workspace(REPO / "manifests/kvm.yml", workspace, tmp_path / "a.yml")
    vzstages("build", *remote, str(manifest_a), cache=cache)
    vzstages("cache", "push", *remote, str(manifest_a), cache=cache)

    # Machine B built the same manifest at the same time, on its own, from a hardened root shell
    # (volume and os copied from A, to save a cold build): the same keys give the same bytes.
    cache_b, workspace_b = tmp_path / "cache-b", tmp_path / "build-b"
    manifest_b = with_workspace(REPO / "manifests/kvm.yml", workspace_b, tmp_path / "b.yml")
    copy_stages(cache, cache_b, manifest_a, ("volume", "os"))
    vzstages("build", str(manifest_b), cache=cache_b, hardened=True)  # umask 077, TZ, locale, UTS
    ours, theirs = records(cache_b, manifest_b), records(cache, manifest_a)
    assert ours["packages"]["digest"] == theirs["packages"]["digest"]

    # Bytes can still differ under one key where the kernel wrote a filesystem (extlinux's, xfs):
    # B's packages checkpoint is written out again with other clusters (the same disk, other
    # bytes), which drops what B built on it.
    other_bytes(cache_b, load_plan(manifest_b, cache_b), "packages")
    ours = records(cache_b, manifest_b)
    assert ours["packages"]["digest"] != theirs["packages"]["digest"] and "system" not in ours

    # B's push changes nothing: the remote keeps A's chain.
    vzstages("build", str(manifest_b), cache=cache_b)
    push = vzstages("cache", "push", *remote, str(manifest_b), cache=cache_b, check=False)
    assert "pushed 0 of" in push.stdout, push.stdout + push.stderr

    # A builds a hostname change and pushes its system and cleanup stages.
    changed = {"hostname: vzstages-kvm": "hostname: raced"}
    renamed_a = with_workspace(REPO / "manifests/kvm.yml", workspace, tmp_path / "a2.yml", edit=changed)
    vzstages("build", *remote, str(renamed_a), cache=cache)

    # B builds the same change with the remote readable: A's system stage was built over A's
    # packages bytes, so B takes A's chain (replacing its own packages) instead of stacking it.
    renamed_b = with_workspace(REPO / "manifests/kvm.yml", workspace_b, tmp_path / "b2.yml", edit=changed)
    plan = vzstages("plan", *remote, str(renamed_b), cache=cache_b)
    assert "system   remote" in plan.stdout, plan.stdout
    out = vzstages("build", *remote, str(renamed_b), cache=cache_b)
    log = out.stdout + out.stderr
    assert "replacing this cache's copy with the remote's" in log, log
    after = records(cache_b, renamed_b)
    assert after["packages"]["digest"] == theirs["packages"]["digest"]
    assert file_sha256(workspace_b / IMAGE) == file_sha256(workspace / IMAGE)
    fsck_clean(workspace_b / IMAGE, tmp_path)
    vzstages("cache", "verify", cache=cache_b)  # every checkpoint's bytes and links
    nothing_left(cache_b)


def test_a_damaged_blob_is_rebuilt_and_its_children_pulled_only_over_the_same_bytes(
    cache, workspace, tmp_path, remote, moto_endpoint
):
    manifest = with_workspace(REPO / "manifests/kvm.yml", workspace, tmp_path / "kvm.yml")
    vzstages("build", *remote, str(manifest), cache=cache)
    vzstages("cache", "push", *remote, str(manifest), cache=cache)
    bucket, prefix = remote[1][len("s3://") :].split("/", 1)
    s3 = boto3.client("s3", endpoint_url=moto_endpoint)
    packages = records(cache, manifest)["packages"]
    record = json.loads(
        s3.get_object(Bucket=bucket, Key=f"{prefix}/records/packages-{packages['key']}.json")["Body"].read()
    )
    blob_key = f"{prefix}/blobs/{record['blob']['sha256']}"
    blob = bytearray(s3.get_object(Bucket=bucket, Key=blob_key)["Body"].read())
    blob[len(blob) // 2] ^= 0xFF
    s3.put_object(Bucket=bucket, Key=blob_key, Body=bytes(blob))

    cache_c, workspace_c = tmp_path / "cache-c", tmp_path / "build-c"
    manifest_c = with_workspace(REPO / "manifests/kvm.yml", workspace_c, tmp_path / "c.yml")
    out = vzstages("build", *remote, str(manifest_c), cache=cache_c)
    log = out.stdout + out.stderr
    assert "packages running" in log, log
    # The rebuild gave the bytes the remote's record names, so the children built over them
    # are pulled, and stacked on exactly those bytes.
    built = records(cache_c, manifest_c)
    assert built["packages"]["digest"] == packages["digest"]
    assert "system   pulled" in log and "cleanup  pulled" in log, log
    assert built["system"]["parent_digest"] == built["packages"]["digest"]
    assert file_sha256(workspace_c / IMAGE) == file_sha256(workspace / IMAGE)
    fsck_clean(workspace_c / IMAGE, tmp_path)
    nothing_left(cache_c)


def other_bytes(cache: Path, plan, stage: str) -> None:
    """The stage's checkpoint with its clusters written again (128 KiB ones): the same disk in
    other bytes, published as the store publishes a rebuild under a known key."""
    store, compiled = Store(cache), plan.stage(stage)
    checkpoint = store.checkpoint(compiled.name, compiled.key)
    record = store.lookup(compiled.name, compiled.key, disk=True)
    assert record is not None
    backing = plan.top_checkpoint(compiled.parent).name
    tmp = store.temp_checkpoint(compiled.name, compiled.key)
    subprocess.run(
        ["qemu-img", "convert", "-q", "-f", "qcow2", "-O", "qcow2", "-o", "cluster_size=131072",
         "-F", "qcow2", "-B", backing, str(checkpoint), str(tmp)],
        check=True,
    )  # fmt: skip
    digest = store.publish_checkpoint(tmp, compiled.name, compiled.key)
    store.save_record(dataclasses.replace(record, digest=digest))
