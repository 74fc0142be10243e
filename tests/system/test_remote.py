"""A shared remote cache between two machines (two caches on one machine stand for them), over a
real S3 API on loopback; and several manifests in one build, their common stages built once."""

from __future__ import annotations

import re

import pytest

from vzstages.cache.record import file_sha256

from ..conftest import REPO
from .conftest import image_tree, nothing_left, vzstages, with_workspace

pytestmark = pytest.mark.system


def statuses(output: str) -> dict[str, str]:
    """Each stage's fate in a build's output: cached, pulled or running."""
    found = {}
    for stage, what in re.findall(r"^(\w+) +(cached|running|up to date|pulled)", output, re.MULTILINE):
        found.setdefault(stage, what)
    return found


def test_a_second_machine_pulls_every_stage_and_gets_the_same_image(cache, workspace, tmp_path, remote):
    # Machine A: the session cache, which earlier tests filled; its kvm.yml chain is warmed into the
    # remote by hand, as a CI job would after a build.
    manifest = with_workspace(REPO / "manifests/kvm.yml", workspace, tmp_path / "kvm.yml")
    vzstages("build", str(manifest), cache=cache)
    push = vzstages("cache", "push", *remote, str(manifest), cache=cache)
    assert re.search(r"pushed [1-9]\d* of \d+ entries", push.stdout), push.stdout
    image_a = workspace / "debian-bookworm-amd64-kvm.qcow2"
    digest_a = file_sha256(image_a)

    # Machine B: an empty cache and another workspace.
    cache_b, workspace_b = tmp_path / "cache-b", tmp_path / "build-b"
    manifest_b = with_workspace(REPO / "manifests/kvm.yml", workspace_b, tmp_path / "b.yml")
    plan = vzstages("plan", *remote, str(manifest_b), cache=cache_b)
    will = dict(re.findall(r"^  (\w+) +(cached|remote|run) ", plan.stdout, re.MULTILINE))
    assert will == {s: "remote" for s in ("volume", "os", "packages", "system", "cleanup")} | {"image": "run"}
    assert "in the remote cache: pull " in plan.stdout, plan.stdout
    out = vzstages("build", *remote, str(manifest_b), cache=cache_b)
    log = out.stdout + out.stderr
    for stage in ("volume", "os", "packages", "system", "cleanup"):
        assert f"{stage:<8} pulled" in log, log
        assert f"{stage:<8} running" not in log, log
    assert "mmdebstrap" not in log
    assert "pulled volume, os, packages, system, cleanup" in out.stdout, out.stdout
    # The very bytes of A's image (which the build checked with fsck): no boot needed to tell
    # that the pulled chain is A's; that a kvm.yml image boots is test_images.py's.
    image_b = workspace_b / "debian-bookworm-amd64-kvm.qcow2"
    assert file_sha256(image_b) == digest_a
    nothing_left(cache_b)

    # A late change on B: os and packages come from the remote, system onwards is built, and
    # pushed back (only the stages that changed).
    changed = with_workspace(
        REPO / "manifests/kvm.yml",
        workspace_b,
        tmp_path / "b2.yml",
        edit={"hostname: vzstages-kvm": "hostname: b2"},
    )
    cache_c = tmp_path / "cache-c"
    out = vzstages("build", *remote, str(changed), cache=cache_c)
    log = out.stdout + out.stderr
    assert all(f"{s:<8} pulled" in log for s in ("volume", "os", "packages")), log
    assert all(f"{s:<8} running" in log for s in ("system", "cleanup", "image")), log
    assert re.search(r"remote cache: pulled 3 \(.*\), pushed 2 \(", log), log
    nothing_left(cache_c)


def test_a_shared_folder_carries_a_build_between_two_caches(cache, workspace, tmp_path):
    """The same as above through the directory backend (an NFS mount in real life): no server."""
    folder = tmp_path / "team-cache"
    folder.mkdir()
    manifest = with_workspace(REPO / "manifests/kvm.yml", workspace, tmp_path / "kvm.yml")
    vzstages("build", str(manifest), cache=cache)
    push = vzstages("cache", "push", "--remote", str(folder), str(manifest), cache=cache)
    assert re.search(r"pushed [1-9]\d* of \d+ entries", push.stdout), push.stdout
    assert not [p for p in folder.rglob(".*")], "a temporary object was left in the shared folder"
    digest_a = file_sha256(workspace / "debian-bookworm-amd64-kvm.qcow2")

    cache_b, workspace_b = tmp_path / "cache-b", tmp_path / "build-b"
    manifest_b = with_workspace(REPO / "manifests/kvm.yml", workspace_b, tmp_path / "b.yml")
    out = vzstages("build", "--remote", f"file://{folder}", str(manifest_b), cache=cache_b)
    assert "pulled volume, os, packages, system, cleanup" in out.stdout, out.stdout + out.stderr
    assert file_sha256(workspace_b / "debian-bookworm-amd64-kvm.qcow2") == digest_a
    verify = vzstages("cache", "verify", cache=cache_b)
    assert "FAIL" not in verify.stdout
    nothing_left(cache_b)


def test_several_manifests_in_one_build_share_their_common_stages(cache, workspace, tmp_path):
    manifests = [
        with_workspace(
            REPO / "manifests/kvm.yml",
            workspace,
            tmp_path / f"{name}.yml",
            edit={
                "{system.architecture}-kvm": "{system.architecture}-" + name,
                "hostname: vzstages-kvm": f"hostname: {name}",
                # A package no other test adds: these manifests' packages stage is new.
                "    - less\n": "    - less\n    - bc\n",
            },
        )
        for name in ("north", "south")
    ]
    out = vzstages("build", "-n", "2", *map(str, manifests), cache=cache)
    log = out.stdout + out.stderr
    assert log.count("north+south:packages running") == 1, log
    assert "north:system running" in log and "south:system running" in log, log
    assert not re.search(r"^\w+:packages running", log.replace("north+south:packages", ""), re.MULTILINE)
    nothing_left(cache)
    for name in ("north", "south"):
        image = workspace / f"debian-bookworm-amd64-{name}.qcow2"
        assert f"image: {image}" in out.stdout, out.stdout
    # Both images passed the image stage's fsck; each differs only by its own system stage, read
    # from its tree. (That kvm.yml's chain boots is test_images' boot; a boot here cost the suite
    # a TCG guest's 80-100 s and proved nothing the shared stage changes.)
    for name, manifest in zip(("north", "south"), manifests, strict=True):
        with image_tree(manifest, cache, tmp_path / f"{name}-tree") as tree:
            assert (tree.root / "etc/hostname").read_text().strip() == name
