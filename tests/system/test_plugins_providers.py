"""Plugins and the remaining providers on real builds: what the plugins did, seen inside the image;
the docker tarball as a root filesystem; the GCE tarball's disk.raw booted; the Vagrant box
unpacked, its OVF read, its disk booted."""

from __future__ import annotations

import json
import re
import subprocess
import tarfile
from pathlib import Path
from xml.etree import ElementTree

import pytest

from vzstages.boottest import boot

from ..conftest import REPO
from .conftest import BOOT_TIMEOUT, image_tree, nothing_left, vzstages, with_workspace

pytestmark = pytest.mark.system


def allocated(path: Path) -> int:
    return path.stat().st_blocks * 512


def password_matches(tree, password: str, hashed: str) -> bool:
    """Checked with the image's own crypt(3) (perl-base is in every Debian): it knows yescrypt."""
    script = "print crypt($ARGV[0], $ARGV[1]) eq $ARGV[1] ? 'yes' : 'no'"
    return tree.chroot(["perl", "-e", script, password, hashed]).output == "yes"


def test_plugins_take_effect_inside_the_image(cache, workspace, tmp_path):
    manifest = with_workspace(REPO / "manifests/kvm-plugins.yml", workspace, tmp_path / "plugins.yml")
    for name in ("files",):
        (tmp_path / name).symlink_to(REPO / "manifests" / name)
    vzstages("build", str(manifest), cache=cache)
    nothing_left(cache)
    with image_tree(manifest, cache, tmp_path / "inspect") as tree:
        root = tree.root
        shadow = {
            line.split(":")[0]: line.split(":")[1] for line in (root / "etc/shadow").read_text().splitlines()
        }
        assert password_matches(tree, "vzstages-root-example", shadow["root"])
        assert password_matches(tree, "vzstages-example", shadow["ops"])
        assert not password_matches(tree, "wrong", shadow["ops"])
        assert "ops" in (root / "etc/group").read_text().split("\nsudo:")[1].split("\n")[0]
        sudoers = root / "etc/sudoers.d/90-vzstages-ops"
        assert (
            sudoers.read_text() == "ops ALL=(ALL:ALL) NOPASSWD:ALL\n"
            and oct(sudoers.stat().st_mode)[-3:] == "440"
        )
        keys = root / "home/ops/.ssh/authorized_keys"
        assert keys.read_text() == (REPO / "manifests/files/example.pub").read_text()
        uid = int(
            next(
                line for line in (root / "etc/passwd").read_text().splitlines() if line.startswith("ops:")
            ).split(":")[2]
        )
        assert keys.stat().st_uid == uid and oct(keys.stat().st_mode)[-3:] == "600"
        assert (root / "etc/motd").read_text() == "Welcome to a vzstages image.\n"
        app = root / "srv/app"
        assert app.stat().st_uid == uid and oct(app.stat().st_mode)[-3:] == "750"
        aliases = app / "skel/aliases"
        assert aliases.stat().st_uid == uid and oct(aliases.stat().st_mode)[-3:] == "640"
        assert (root / "etc/vzstages-release").read_text() == "built by vzstages\n"
        assert not list((root / "usr/share/man").glob("*")) if (root / "usr/share/man").exists() else True
        assert (root / "etc/apt/apt.conf.d/90-vzstages-autoclean").exists()
        records = [p.read_text() for p in (cache / "stages").glob("*.json")]
        assert not any("vzstages-root-example" in r or 'vzstages-example"' in r for r in records)
    logs = "".join(p.read_text() for p in (workspace / "logs").glob("plugins-*.log"))
    assert "vzstages-root-example" not in logs

    # The same manifest without minimize_size gives a larger image.
    plain = with_workspace(
        REPO / "manifests/kvm-plugins.yml",
        workspace,
        tmp_path / "plain.yml",
        edit={"-plugins\n": "-plain\n"},
    )
    text = plain.read_text()
    plain.write_text(text[: text.index("  minimize_size:")])
    vzstages("build", str(plain), cache=cache)
    small = allocated(workspace / "debian-bookworm-amd64-plugins.qcow2")
    large = allocated(workspace / "debian-bookworm-amd64-plain.qcow2")
    assert small < large - 10 * 2**20, (small, large)


def test_docker_tarball_is_a_root_filesystem(cache, workspace, tmp_path):
    manifest = with_workspace(REPO / "manifests/docker.yml", workspace, tmp_path / "docker.yml")
    vzstages("build", str(manifest), cache=cache)
    tar = workspace / "debian-bookworm-amd64-docker.tar"
    changes = (workspace / "debian-bookworm-amd64-docker.changes").read_text().splitlines()
    assert 'LABEL org.opencontainers.image.title="debian-bookworm"' in changes
    assert 'CMD ["/bin/bash"]' in changes
    with tarfile.open(tar) as archive:
        names = set(archive.getnames())
        assert {"./bin", "./etc/os-release", "./usr/bin/apt-get"} <= names
        assert not any(n.startswith("./boot/vmlinuz") for n in names)
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    subprocess.run(
        ["tar", "--extract", "--numeric-owner", "--file", str(tar), "--directory", str(rootfs)], check=True
    )
    out = subprocess.run(
        [
            "chroot",
            str(rootfs),
            "/bin/sh",
            "-c",
            ". /etc/os-release; echo $VERSION_CODENAME; dpkg -l | wc -l",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out[0] == "bookworm" and int(out[1]) > 50
    assert not list((rootfs / "usr/share/doc").glob("*/changelog*"))
    nothing_left(cache)


def test_gce_tarball_holds_a_bootable_disk_raw(cache, workspace, tmp_path):
    manifest = with_workspace(REPO / "manifests/gce.yml", workspace, tmp_path / "gce.yml")
    vzstages("build", str(manifest), cache=cache)
    tarball = workspace / "debian-bookworm-amd64-gce.tar.gz"
    with tarfile.open(tarball) as archive:
        assert archive.getnames() == ["disk.raw"]
        archive.extractall(tmp_path, filter="data")
    disk = tmp_path / "disk.raw"
    assert disk.stat().st_size > 2 * 1024**3
    report = boot(disk, hostname="vzstages-gce", timeout=BOOT_TIMEOUT, console_log=tmp_path / "console.log")
    assert report.ok, f"{report.failure}; missing {report.missing}; console tail:\n{report.console[-3000:]}"
    nothing_left(cache)


def test_vagrant_box_imports_as_ovf_and_boots(cache, workspace, tmp_path):
    # 2 GiB instead of 8 so the volume and os checkpoints are shared with the other tests.
    manifest = with_workspace(
        REPO / "manifests/virtualbox-vagrant.yml", workspace, tmp_path / "vagrant.yml", edit={"8GiB": "2GiB"}
    )
    vzstages("build", str(manifest), cache=cache)
    nothing_left(cache)
    box = workspace / "debian-bookworm-amd64-vagrant.box"
    unpacked = tmp_path / "box"
    with tarfile.open(box) as archive:
        assert sorted(archive.getnames()) == ["Vagrantfile", "box-disk1.vmdk", "box.ovf", "metadata.json"]
        archive.extractall(unpacked, filter="data")
    assert json.loads((unpacked / "metadata.json").read_text()) == {"provider": "virtualbox"}
    assert re.search(r'config\.vm\.base_mac = "080027[0-9A-F]{6}"', (unpacked / "Vagrantfile").read_text())

    disk = unpacked / "box-disk1.vmdk"
    info = json.loads(
        subprocess.run(
            ["qemu-img", "info", "--output=json", str(disk)], capture_output=True, check=True
        ).stdout
    )
    assert info["format"] == "vmdk" and info["format-specific"]["data"]["create-type"] == "streamOptimized"
    subprocess.run(["qemu-img", "check", str(disk)], check=True, capture_output=True)
    ns = {"ovf": "http://schemas.dmtf.org/ovf/envelope/1"}
    ovf = ElementTree.parse(unpacked / "box.ovf").getroot()
    attr = "{http://schemas.dmtf.org/ovf/envelope/1}"
    file_ref = ovf.find("ovf:References/ovf:File", ns)
    disk_entry = ovf.find("ovf:DiskSection/ovf:Disk", ns)
    assert file_ref is not None and disk_entry is not None
    assert file_ref.get(f"{attr}href") == "box-disk1.vmdk"
    assert int(disk_entry.get(f"{attr}capacity") or 0) == info["virtual-size"]
    assert disk_entry.get(f"{attr}format", "").endswith("#streamOptimized")

    with image_tree(manifest, cache, tmp_path / "inspect") as tree:
        root = tree.root
        shadow = dict(line.split(":")[:2] for line in (root / "etc/shadow").read_text().splitlines())
        assert password_matches(tree, "vagrant", shadow["vagrant"])
        assert password_matches(tree, "vagrant", shadow["root"])
        sudoers = root / "etc/sudoers.d/vagrant"
        assert (
            sudoers.read_text() == "vagrant ALL=(ALL) NOPASSWD:ALL\n"
            and oct(sudoers.stat().st_mode)[-3:] == "440"
        )
        keys = root / "home/vagrant/.ssh/authorized_keys"
        assert "vagrant insecure public key" in keys.read_text()
        assert keys.read_text() == (REPO / "vzstages/plugins/vagrant/assets/vagrant.pub").read_text()
        uid = int(tree.chroot(["id", "-u", "vagrant"]).output)
        assert keys.stat().st_uid == uid and oct(keys.stat().st_mode)[-3:] == "600"
        assert oct(keys.parent.stat().st_mode)[-3:] == "700"
        assert (
            "install ok installed"
            in tree.chroot(["dpkg-query", "-W", "-f", "${Status}", "nfs-common"]).output
        )

    # The box's own disk boots on the controller the OVF gives it (AHCI/SATA), with sshd up.
    report = boot(disk, hostname="vagrant", disk_interface="sata", timeout=BOOT_TIMEOUT)
    assert report.ok, f"{report.failure}; missing {report.missing}; console tail:\n{report.console[-3000:]}"
