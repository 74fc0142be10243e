"""The stage cache on real builds: resume after SIGKILL, concurrent builds, verify and gc."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest

from ..conftest import REPO
from .conftest import leftovers, nothing_left, start_build, vzstages, wait_until_mounted, with_workspace

pytestmark = pytest.mark.system


def test_sigkill_mid_stage_then_resume_cleans_up_and_reuses(cache, workspace, tmp_path):
    manifest = with_workspace(
        REPO / "manifests/kvm.yml",
        workspace,
        tmp_path / "killed.yml",
        edit={"    - less\n": "    - less\n    - bzip2\n"},
    )
    vzstages("build", str(manifest), "os", cache=cache)  # volume and os done before the kill
    proc = start_build(manifest, cache)
    wait_until_mounted(cache, timeout=600)
    time.sleep(3)  # well inside the packages stage: apt is running in the chroot
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    left = leftovers(cache)
    assert left["mounts"] and left["loops"] and left["daemons"], left
    assert list((cache / "runs").glob("*/packages/scratch.qcow2")), "the stage ran on its scratch overlay"

    rerun = vzstages("build", str(manifest), cache=cache)
    output = rerun.stdout + rerun.stderr
    assert "cleaned up after a dead build: run " in output
    assert "volume   up to date" in output or "volume   cached" in output
    assert "os       up to date" in output or "os       cached" in output
    assert "packages running" in output
    nothing_left(cache)
    assert not list((cache / "runs").iterdir())


def test_diff_names_the_one_package_a_variant_adds(cache, tmp_path):
    """kvm.yml against the variant with bzip2 the test above built: its stages are in the
    cache, so each image here is only converted (and evidence written) in a folder of its own."""
    images = {}
    for label, edit in (("plain", {}), ("bzip2", {"    - less\n": "    - less\n    - bzip2\n"})):
        folder = tmp_path / label
        manifest = with_workspace(REPO / "manifests/kvm.yml", folder, tmp_path / f"{label}.yml", edit=edit)
        vzstages("build", str(manifest), cache=cache)
        images[label] = folder / "debian-bookworm-amd64-kvm.qcow2"
    changes = json.loads(
        vzstages("diff", str(images["plain"]), str(images["bzip2"]), "--json", cache=cache).stdout
    )
    assert list(changes["added"]) == ["bzip2:amd64"] and changes["added"]["bzip2:amd64"]
    assert changes["removed"] == {} and changes["changed"] == {}
    text = vzstages("diff", str(tmp_path / "plain.yml"), str(tmp_path / "bzip2.yml"), cache=cache).stdout
    assert text.splitlines() == [
        f"+ bzip2:amd64 {changes['added']['bzip2:amd64']}",
        "1 added, 0 removed, 0 changed",
    ]
    # The files, read from the two trees in the cache.
    both = [str(tmp_path / "plain.yml"), str(tmp_path / "bzip2.yml")]
    files = json.loads(vzstages("diff", "--files", "--json", *both, cache=cache).stdout)["files"]
    assert (
        files["added"]["/usr/bin/bzip2"]["mode"] == "-rwxr-xr-x"
        and files["added"]["/usr/bin/bzip2"]["sha256"]
    )
    assert "sha256" in files["changed"]["/var/lib/dpkg/status"]
    assert files["removed"] == {}
    nothing_left(cache)


def test_two_concurrent_builds_share_one_checkpoint_per_stage(cache, workspace, tmp_path):
    manifest = with_workspace(
        REPO / "manifests/kvm.yml",
        workspace,
        tmp_path / "twins.yml",
        edit={"hostname: vzstages-kvm": "hostname: twins"},
    )
    first, second = start_build(manifest, cache), start_build(manifest, cache)
    outputs = [p.communicate(timeout=900)[0] for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outputs
    for stage in ("system", "cleanup", "image"):
        ran = [o for o in outputs if f"{stage:<8} running" in o]
        assert len(ran) == 1, (stage, outputs)
        assert len(list((cache / "stages").glob(f"{stage}-*.json"))) >= 1
    nothing_left(cache)
    verify = vzstages("cache", "verify", cache=cache)
    assert "FAIL" not in verify.stdout and verify.stdout.count("ok ") >= 6


def test_concurrent_builds_of_different_manifests_share_the_package_cache(cache, workspace, tmp_path):
    """Both install packages at the same time through one .deb cache: one waits for the other's
    downloads instead of failing on apt's archive lock, and both images come out whole."""
    manifests = [
        with_workspace(
            REPO / "manifests/kvm.yml",
            workspace,
            tmp_path / f"{name}.yml",
            edit={
                "{system.architecture}-kvm": "{system.architecture}-" + name,
                "hostname: vzstages-kvm": f"hostname: {name}",
                "    - less\n": f"    - less\n    - {extra}\n",
            },
        )
        # Packages no other test adds: their packages stages must not already be in the shared cache.
        for name, extra in (("left", "tree"), ("right", "lz4"))
    ]
    procs = [start_build(m, cache) for m in manifests]
    outputs = [p.communicate(timeout=900)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    assert all("packages running" in o for o in outputs), outputs  # different keys: both built
    assert any("waiting for another build that is using the package cache" in o for o in outputs), outputs
    nothing_left(cache)
    for name in ("left", "right"):
        image = workspace / f"debian-bookworm-amd64-{name}.qcow2"
        subprocess.run(["qemu-img", "check", "-q", str(image)], check=True)
    verify = vzstages("cache", "verify", cache=cache)
    assert "FAIL" not in verify.stdout, verify.stdout


def test_gc_keeps_every_chain_intact(cache, tmp_path):
    before = vzstages("cache", "ls", cache=cache).stdout
    vzstages("cache", "gc", "--max-size", "1G", cache=cache)
    verify = vzstages("cache", "verify", cache=cache)
    assert "FAIL" not in verify.stdout, (before, verify.stdout)
