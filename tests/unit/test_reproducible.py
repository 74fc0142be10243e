"""The same key gives the same tree: one epoch per stage from its archive state, and what the
build's clock and randomness leave, taken out (common/reproducible.py)."""

from __future__ import annotations

import os
import subprocess

import pytest

from vzstages.cache.record import Record
from vzstages.common import archive, reproducible
from vzstages.evidence.writer import source_date_epoch
from vzstages.volume.inroot import ImagePath

RELEASE = b"""-----BEGIN PGP SIGNED MESSAGE-----
Hash: SHA512

Origin: Debian
Suite: stable
Codename: bookworm
Date: Sat, 11 Jul 2026 09:36:37 UTC
Acquire-By-Hash: yes
"""


def test_the_release_date_is_read_from_a_clearsigned_inrelease():
    assert archive.release_date(RELEASE) == 1783762597
    assert archive.release_date(b"Origin: Debian\n") == 0
    assert archive.release_date(b"Date: not a date\n") == 0
    assert archive.release_date(b"Date: " + b"9" * 10_000 + b"\n") == 0


def test_a_stage_takes_the_date_of_the_very_state_its_key_names_only(fake_stage):
    stage = fake_stage(stage="packages")
    info = stage.info
    info.facts["epoch"] = reproducible.EPOCH_FLOOR
    info.archive = {"bookworm": archive.suite_digest(RELEASE)}
    info.adopt_release_date("bookworm", RELEASE, archive.release_date(RELEASE))
    assert info.epoch == 1783762597
    # Another InRelease under the same key (the mirror moved, the state is unknown): no date.
    info.facts["epoch"] = reproducible.EPOCH_FLOOR
    moved = RELEASE.replace(b"09:36:37", b"21:00:00")
    info.adopt_release_date("bookworm", moved, archive.release_date(moved))
    assert info.epoch == reproducible.EPOCH_FLOOR


def test_a_parents_epoch_is_believed_only_within_bounds():
    assert reproducible.epoch_of({"epoch": 1783762597}) == 1783762597
    for junk in (None, "1783762597", True, -1, 10**20, 1.5e9, [1]):
        assert reproducible.epoch_of({"epoch": junk}) == reproducible.EPOCH_FLOOR


def test_times_newer_than_the_epoch_are_clamped_older_ones_kept_and_access_follows_modification(tmp_path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/new").write_text("made by the build\n")
    (root / "etc/old").write_text("from a package\n")
    os.utime(root / "etc/old", (1_000_000_000, 1_000_000_000))
    (root / "etc/link").symlink_to("new")
    (root / "etc/read").write_text("from a package, read since\n")
    os.utime(root / "etc/read", (1_750_000_000, 1_000_000_000))
    epoch = 1_700_000_000
    changed = reproducible.clamp_times(root, [root.stat().st_dev], epoch)
    assert changed == 5  # the root, etc, etc/new, etc/link and etc/read; not etc/old
    assert (root / "etc/read").stat().st_atime == (root / "etc/read").stat().st_mtime == 1_000_000_000
    for path in (root, root / "etc", root / "etc/new"):
        assert path.lstat().st_mtime == epoch and path.lstat().st_atime == epoch
    assert (root / "etc/link").lstat().st_mtime == epoch
    assert (root / "etc/old").stat().st_mtime == 1_000_000_000


def test_clamping_follows_no_symlink_and_leaves_other_filesystems_alone(tmp_path):
    host = tmp_path / "host-file"
    host.write_text("the build host's\n")
    before = host.stat().st_mtime_ns
    root = tmp_path / "root"
    (root / "dir").mkdir(parents=True)
    (root / "dir/out").symlink_to(host)
    (root / "out-dir").symlink_to(tmp_path)
    reproducible.clamp_times(root, [root.stat().st_dev], 1_600_000_000)
    assert host.stat().st_mtime_ns == before
    # A tree whose device is not the image's (/proc, /dev, the package cache bound in): untouched.
    (root / "dir/file").write_text("x")
    mtime = (root / "dir/file").stat().st_mtime_ns
    assert reproducible.clamp_times(root, [root.stat().st_dev + 1], 1_600_000_000) == 0
    assert (root / "dir/file").stat().st_mtime_ns == mtime


def test_what_randomness_and_the_clock_wrote_goes(tmp_path):
    root = tmp_path / "root"
    for path, text in {
        "etc/ssh/ssh_host_ed25519_key": "secret",
        "etc/machine-id": "0123456789abcdef\n",
        "var/lib/systemd/random-seed": "seed",
        "var/cache/ldconfig/aux-cache": "inodes",
        "var/cache/apt/pkgcache.bin": "cache",
        "var/log/dpkg.log": "2026-11-30 12:00:00 install ...\n",
        "var/log/apt/history.log.1.gz": "old",
        "etc/ssh/sshd_config": "kept\n",
    }.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    image = ImagePath(root)
    reproducible.forget_machine(image)
    reproducible.empty_logs(image)
    left = {str(p.relative_to(root)): p.read_text() for p in root.rglob("*") if p.is_file()}
    assert left == {"etc/machine-id": "", "var/log/dpkg.log": "", "etc/ssh/sshd_config": "kept\n"}


def test_the_evidence_is_dated_with_the_epoch_the_stages_were_built_with(monkeypatch):
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    archive = {"bookworm": {"date": 1783762597}, "bookworm-security": {"date": 1795913593}}
    os_stage = Record("os", "a" * 32, None, None, {}, facts={"epoch": 1783762597})
    packages = Record(
        "packages", "b" * 32, "a" * 32, "os", {}, facts={"epoch": 1795913593, "archive": archive}
    )
    assert source_date_epoch([os_stage, packages]) == 1795913593
    older = Record("packages", "c" * 32, None, None, {}, facts={"archive": archive})
    assert source_date_epoch([older]) == 1795913593  # records from before the epoch fact
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    assert source_date_epoch([os_stage, packages]) == 1700000000


def test_an_immutable_file_gets_its_times_and_stays_immutable(tmp_path):
    """extlinux marks ldlinux.sys immutable: its times are set with the flag lifted and put back."""
    root = tmp_path / "root"
    (root / "boot").mkdir(parents=True)
    loader = root / "boot/ldlinux.sys"
    loader.write_bytes(b"\\0" * 4096)
    if os.geteuid() != 0 or subprocess.run(["chattr", "+i", str(loader)], capture_output=True).returncode:
        pytest.skip("setting the immutable flag needs root and a filesystem with inode flags")
    try:
        reproducible.clamp_times(root, [root.stat().st_dev], 1_600_000_000)
        assert loader.stat().st_mtime == loader.stat().st_atime == 1_600_000_000
        flags = subprocess.run(["lsattr", str(loader)], capture_output=True, text=True).stdout
        assert "i" in flags.split()[0]
    finally:
        subprocess.run(["chattr", "-i", str(loader)], check=False)
