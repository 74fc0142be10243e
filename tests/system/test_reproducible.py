"""Same key, same bytes: what is reproducible today, checked byte for byte between two builds
from different caches, paths, umasks, time zones, locales, host names and numbers of CPUs."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from vzstages.build import load_plan
from vzstages.cache.record import file_sha256

from ..conftest import REPO
from .conftest import image_tree, vzstages, with_workspace

pytestmark = pytest.mark.system


def first_difference(a: Path, b: Path) -> str:
    out = subprocess.run(["cmp", str(a), str(b)], capture_output=True, text=True)
    return (out.stdout + out.stderr).strip()


@pytest.mark.parametrize("name", ["kvm-trixie-extlinux.yml"])
def test_the_volume_stage_is_byte_identical_from_any_caller(tmp_path, system_host, name):
    """An unpartitioned disk whose filesystem starts at its first sector: every identity from the
    key. (The volume stages of kvm, ec2 and azure are compared with all their other stages below;
    the extlinux layouts keep the kernel's bytes after this stage.)"""
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


def tree_of(root: Path) -> dict[str, tuple[object, ...]]:
    """Every path of a tree and all a user or a program can read of it: type and mode, owner,
    size, content, link target, device number, extended attributes, modification and access
    times. Not what only the filesystem's writer sets: change times, and a folder's size (the
    blocks its entries took over its history: mmdebstrap's folders against the same tree unpacked
    from the base system kept beside the package cache)."""
    described: dict[str, tuple[object, ...]] = {}
    for folder, folders, names in os.walk(root):
        for name in folders + names:
            path = Path(folder) / name
            st = path.lstat()
            content = file_sha256(path) if stat.S_ISREG(st.st_mode) else None
            target = os.readlink(path) if stat.S_ISLNK(st.st_mode) else None
            xattrs = sorted(
                (k, os.getxattr(path, k, follow_symlinks=False))
                for k in os.listxattr(path, follow_symlinks=False)
            )
            described["/" + str(path.relative_to(root))] = (
                stat.filemode(st.st_mode),
                st.st_uid,
                st.st_gid,
                None if stat.S_ISDIR(st.st_mode) else st.st_size,
                content,
                target,
                st.st_rdev,
                xattrs,
                st.st_mtime_ns,
                st.st_atime_ns,
            )
    return described


def checkpoints_and_images(manifest: Path, cache: Path) -> dict[str, str]:
    """The SHA-256 of every disk stage's checkpoint and of every image the build wrote."""
    plan = load_plan(manifest, cache, publish=False)
    digests = {s.name: file_sha256(plan.checkpoint(s)) for s in plan.stages if s.disk}
    for stage in plan.stages:
        for output in stage.outputs:
            if output.exists() and output.stat().st_size > 1 << 20:
                digests[output.name] = file_sha256(output)
    return digests


def where_trees_differ(manifests: list[Path], caches: list[Path], stage: str, folder: Path) -> str:
    trees = []
    for run, (manifest, cache) in enumerate(zip(manifests, caches, strict=True)):
        with image_tree(manifest, cache, folder / f"{stage}-{run}", stage) as tree:
            trees.append(tree_of(tree.root))
    one, two = trees
    differing = sorted(p for p in one.keys() | two.keys() if one.get(p) != two.get(p))
    where = [f"  {p}: {one.get(p)} / {two.get(p)}" for p in differing[:20]]
    return f"{len(differing)} paths differ in its tree" + "".join("\n" + w for w in where)


@pytest.mark.parametrize("name", ["kvm.yml", "ec2.yml", "azure.yml"])
def test_every_checkpoint_and_the_image_are_byte_identical_from_any_caller(
    tmp_path, system_host, cache, name
):
    """The same manifest built in the session's cache (stages other tests built, pulled or
    reused) and cold in another cache from a hardened shell (umask 077, another host name, time
    zone, locale, one CPU, another workspace): every checkpoint and every image file (qcow2;
    ec2's raw disk; azure's hybrid BIOS+UEFI disk as a fixed VHD) has the same bytes. On a
    difference, the first differing stage's tree is compared file by file, to say where."""
    manifests, caches = [], [cache, tmp_path / "cold"]
    for run, (hardened, build_cache) in enumerate(zip((False, True), caches, strict=True)):
        manifest = with_workspace(
            REPO / "manifests" / name, tmp_path / f"build-{run}", tmp_path / f"{run}.yml"
        )
        vzstages("build", "--no-publish", str(manifest), cache=build_cache, hardened=hardened)
        manifests.append(manifest)
    one, two = (checkpoints_and_images(m, c) for m, c in zip(manifests, caches, strict=True))
    assert one.keys() == two.keys()
    differing = [what for what in one if one[what] != two[what]]
    if differing:
        first = differing[0]
        detail = (
            where_trees_differ(manifests, caches, first, tmp_path)
            if first in ("os", "packages", "system", "cleanup")
            else ""
        )
        pytest.fail(f"{name}: {', '.join(differing)} differ; {first}: {detail}")
