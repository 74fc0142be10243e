"""Tasks run against a folder standing in for the mounted image, with a host that records the
commands instead of running them: what each task leaves in the tree is checked without root."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from vzstages.common import apt, archive, cleanup, system
from vzstages.common.files import CopyFiles
from vzstages.plugins.apt_proxy import ConfigureAptProxy

from ..conftest import KVM_MANIFEST


def test_apt_conf_d_settings_reach_the_image(fake_stage):
    stage = fake_stage(
        KVM_MANIFEST.replace(
            "packages:\n",
            "packages:\n  apt.conf.d:\n    10retries: 'Acquire::Retries \"3\";'\n"
            "  preferences:\n    backports:\n"
            "      - {package: '*', pin: 'release a=stable', pin-priority: 100}\n",
        ),
        stage="packages",
    )
    stage.run(apt.WriteAptSettings)
    assert (stage.root / "etc/apt/apt.conf.d/10retries").read_text() == 'Acquire::Retries "3";\n'
    assert "Pin-Priority: 100" in (stage.root / "etc/apt/preferences.d/backports").read_text()


def test_hostname_and_hosts(fake_stage):
    stage = fake_stage(KVM_MANIFEST.replace("hostname: alpha", "hostname: web.example.org"))
    stage.run(system.SetHostname)
    assert (stage.root / "etc/hostname").read_text() == "web.example.org\n"
    assert "127.0.1.1\tweb.example.org web" in (stage.root / "etc/hosts").read_text()


def test_cleanup_through_planted_links_never_touches_the_host(fake_stage, tmp_path):
    stage = fake_stage(stage="cleanup")
    host = tmp_path / "host"
    (host / "etc").mkdir(parents=True)
    (host / "etc/machine-id").write_text("the build host's id\n")
    (host / "log").mkdir()
    (host / "log/syslog").write_text("host log\n")
    (stage.root / "etc").mkdir(exist_ok=True)
    (stage.root / "etc/machine-id").symlink_to(host / "etc/machine-id")
    (stage.root / "var/log/host").symlink_to(host / "log")
    (stage.root / "tmp/escape").symlink_to(host)
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in host.rglob("*") if p.is_file()}
    for task in (cleanup.MakeGeneric, cleanup.ClearLogsAndTemp):
        stage.run(task)
    after = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in host.rglob("*") if p.is_file()}
    assert after == before
    assert not (stage.root / "tmp/escape").is_symlink()  # the link itself went, not its target


def test_file_copy_replaces_planted_links_and_keeps_its_own(fake_stage, tmp_path):
    source = tmp_path / "tree"
    (source / "etc").mkdir(parents=True)
    (source / "etc/motd").write_text("hello\n")
    (source / "etc/machine-id").symlink_to("/etc/machine-id")  # a link to itself, in the image
    stage = fake_stage(
        KVM_MANIFEST + f"plugins:\n  file_copy:\n    files:\n      - {{src: {source}, dst: /}}\n",
        stage="user",
    )
    (stage.root / "etc").mkdir(exist_ok=True)
    (stage.root / "etc/machine-id").write_text("image id\n")
    (stage.root / "etc/motd").symlink_to(tmp_path / "host-motd")  # planted, pointing out
    stage.run(CopyFiles)
    motd = stage.root / "etc/motd"
    assert motd.read_text() == "hello\n" and not motd.is_symlink()
    assert not (tmp_path / "host-motd").exists()
    assert (stage.root / "etc/machine-id").readlink() == Path("/etc/machine-id")


def test_apt_proxy_password_stays_out_of_the_image(fake_stage):
    stage = fake_stage(
        KVM_MANIFEST
        + "plugins:\n  apt_proxy:\n    address: proxy.example.org\n    port: 3128\n"
        + "    username: u\n    password: s3cret-proxy\n",
        stage="packages",
    )
    stage.run(ConfigureAptProxy)
    assert stage.info.apt_config == ['Acquire::http::Proxy "http://u:s3cret-proxy@proxy.example.org:3128";']
    written = [p for p in Path(stage.root).rglob("*") if p.is_file()]
    assert all(b"s3cret-proxy" not in p.read_bytes() for p in written)


def test_apt_installs_only_from_the_archive_state_its_key_names(fake_stage):
    """The lists apt fetched are compared with the state in the stage's key: a suite that moved
    since (a security update published after the state was taken) stops the stage before any
    package is installed under the old key."""
    from vzstages.errors import ArchiveMoved
    from vzstages.model.view import ManifestView

    def stage_at(states: dict[str, bytes], named: dict[str, bytes]):
        stage = fake_stage(stage="packages")
        view = ManifestView(stage.manifest, apt.AptUpdate.name(), apt.AptUpdate.reads)
        lists = stage.root / "var/lib/apt/lists"
        lists.mkdir(parents=True, exist_ok=True)
        for suite, mirror in archive.debian_suites(view).items():
            (lists / archive.list_name(mirror, suite)).write_bytes(states[suite])
        stage.info.archive = {s: archive.suite_digest(b) for s, b in named.items()}
        return stage

    release = {"bookworm": b"Date: 1\n", "bookworm-updates": b"Date: 2\n", "bookworm-security": b"Date: 3\n"}
    same = stage_at(release, release)
    same.run(apt.AptUpdate)
    assert any("dist-upgrade" in c for c in same.host.commands)

    moved = stage_at({**release, "bookworm-security": b"Date: 4\n"}, release)
    with pytest.raises(ArchiveMoved, match="bookworm-security"):
        moved.run(apt.AptUpdate)
    assert not any("dist-upgrade" in c for c in moved.host.commands)

    unknown = stage_at({**release, "bookworm": b"other\n"}, {**release, "bookworm": b""})
    unknown.info.archive["bookworm"] = "unreachable"  # offline when the plan was made: not comparable
    unknown.run(apt.AptUpdate)


def test_apt_names_its_lists_as_apt_does():

    assert (
        archive.list_name("http://user:secret@mirror.example:8080/debian/", "bookworm")
        == "mirror.example:8080_debian_dists_bookworm_InRelease"
    )
    assert archive.list_name("https://mirror.example/debian-security", "bookworm-security") == (
        "mirror.example_debian-security_dists_bookworm-security_InRelease"
    )
