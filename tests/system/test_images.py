"""Build real images from the manifests under manifests/, boot them, and check what booted."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from vzstages.boottest import boot
from vzstages.build import load_plan
from vzstages.host import Host
from vzstages.volume.disk import opened_readonly

from ..conftest import REPO
from .conftest import nothing_left, vzstages, with_workspace

pytestmark = pytest.mark.system


def assert_boots(image: Path, hostname: str, tmp_path: Path) -> None:
    report = boot(image, hostname=hostname, timeout=400, console_log=tmp_path / "console.log")
    assert report.ok, f"{report.failure}; missing {report.missing}; console tail:\n{report.console[-3000:]}"
    assert report.facts["kernel"].startswith("Linux version")
    assert report.facts[f"hostname {hostname}"] == f"{hostname} login:"
    assert report.facts["sshd answers on the DHCP address (host keys made at first boot)"].startswith(
        "SSH-2.0-"
    )


def test_kvm_bookworm_gpt_grub_builds_and_boots(cache, workspace, tmp_path):
    manifest = with_workspace(REPO / "manifests/kvm.yml", workspace, tmp_path / "kvm.yml")
    out = vzstages("build", str(manifest), cache=cache)
    image = workspace / "debian-bookworm-amd64-kvm.qcow2"
    assert image.exists(), out.stdout
    assert subprocess.run(["qemu-img", "check", str(image)], capture_output=True).returncode == 0
    nothing_left(cache)
    # The cache is shared with the other system tests: read this build's own chain of records.
    plan = load_plan(manifest, cache)
    assert [s.name for s in plan.stages] == ["volume", "os", "packages", "system", "cleanup", "image"]
    records = {s.name: json.loads(plan.store.record_path(s.name, s.key).read_text()) for s in plan.stages}
    assert all(records[s.name]["key"] == s.key for s in plan.stages)
    assert records["packages"]["facts"]["kernel_version"].endswith("-amd64")
    assert records["system"]["facts"]["uuids"]["root"]
    assert_boots(image, "vzstages-kvm", tmp_path)

    rerun = vzstages("build", str(manifest), cache=cache)
    assert "nothing to do: all 6 stages are up to date" in rerun.stdout


def test_image_is_generic(cache, workspace, tmp_path):
    """What the cleanup stage promises, checked inside the built image's top checkpoint."""
    manifest = with_workspace(REPO / "manifests/kvm.yml", workspace, tmp_path / "kvm.yml")
    vzstages("build", str(manifest), cache=cache)
    plan = load_plan(manifest, cache)
    top = plan.checkpoint(plan.stage("cleanup"))
    (tmp_path / "inspect").mkdir()
    with opened_readonly(Host(), top, plan.manifest.layout, tmp_path / "inspect") as tree:
        root = tree.root
        assert not list((root / "etc/ssh").glob("ssh_host_*")), "SSH host keys left in the image"
        assert (root / "etc/machine-id").read_text() == ""
        assert not (root / "etc/resolv.conf").exists() and not (root / "etc/resolv.conf").is_symlink()
        assert not (root / "usr/sbin/policy-rc.d").exists()
        assert not list((root / "var/cache/apt/archives").glob("*.deb"))
        assert not [p for p in (root / "var/lib/apt/lists").glob("*") if p.is_file() and p.name != "lock"]
        assert (root / "etc/hostname").read_text() == "vzstages-kvm\n"
        fstab = (root / "etc/fstab").read_text()
        assert "UUID=" in fstab and "\t/\text4\t" in fstab
        assert "virtio_scsi" in (root / "etc/initramfs-tools/modules").read_text()
        grub_cfg = (root / "boot/grub/grub.cfg").read_text()
        assert "root=UUID=" in grub_cfg and "linux /boot/vmlinuz-" in grub_cfg
    nothing_left(cache)
    assert not list((tmp_path / "inspect").iterdir()), "the inspection overlay was not removed"


@pytest.mark.skipif(
    os.environ.get("VZSTAGES_SLOW_TESTS") != "1",
    reason="a whole chain of its own (~2.5 min): set VZSTAGES_SLOW_TESTS=1 (arm64's test covers UEFI in CI)",
)
def test_amd64_uefi_builds_and_boots_with_ovmf(cache, workspace, tmp_path):
    manifest = with_workspace(
        REPO / "manifests/kvm.yml",
        workspace,
        tmp_path / "uefi.yml",
        edit={
            "  bootloader: grub\n": "  bootloader: grub\n  firmware: uefi\n",
            "{system.architecture}-kvm": "{system.architecture}-kvm-uefi",
        },
    )
    vzstages("build", str(manifest), cache=cache)
    nothing_left(cache)
    image = workspace / "debian-bookworm-amd64-kvm-uefi.qcow2"
    report = boot(
        image, hostname="vzstages-kvm", timeout=400, firmware="uefi", console_log=tmp_path / "console.log"
    )
    assert report.ok, f"{report.failure}; missing {report.missing}; console tail:\n{report.console[-3000:]}"
    assert "efi: EFI v" in report.console and "Welcome to GRUB!" in report.console  # OVMF ran grub
    assert "Mounted boot-efi.mount - /boot/efi" in report.console


def test_trixie_unpartitioned_extlinux_builds_and_boots(cache, workspace, tmp_path):
    manifest = with_workspace(REPO / "manifests/kvm-trixie-extlinux.yml", workspace, tmp_path / "trixie.yml")
    vzstages("build", str(manifest), cache=cache)
    image = workspace / "debian-trixie-amd64-extlinux.qcow2"
    nothing_left(cache)
    assert_boots(image, "vzstages-trixie", tmp_path)


def test_virtualbox_manifest_gives_a_valid_vdi(cache, workspace, tmp_path):
    manifest = with_workspace(REPO / "manifests/virtualbox.yml", workspace, tmp_path / "vbox.yml")
    vzstages("build", str(manifest), cache=cache)
    image = workspace / "debian-bookworm-amd64-virtualbox.vdi"
    check = subprocess.run(["qemu-img", "check", str(image)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    info = json.loads(
        subprocess.run(
            ["qemu-img", "info", "--output=json", str(image)], capture_output=True, text=True, check=True
        ).stdout
    )
    assert info["format"] == "vdi" and info["virtual-size"] > 2 * 1024**3


def test_late_change_rebuilds_only_late_stages_and_plan_names_it(cache, workspace, tmp_path):
    manifest = with_workspace(REPO / "manifests/kvm.yml", workspace, tmp_path / "kvm.yml")
    vzstages("build", str(manifest), cache=cache)
    changed = with_workspace(
        REPO / "manifests/kvm.yml",
        workspace,
        tmp_path / "renamed.yml",
        edit={"hostname: vzstages-kvm": "hostname: renamed-host"},
    )
    plan = vzstages("plan", str(changed), cache=cache).stdout
    assert "manifest key system.hostname: 'vzstages-kvm' -> 'renamed-host'" in plan
    for stage in ("volume", "os", "packages"):
        assert any(line.split()[:2] == [stage, "cached"] for line in plan.splitlines()), plan
    out = vzstages("build", str(changed), cache=cache)
    log = out.stdout + out.stderr
    assert "built system, cleanup, image" in out.stdout and "reused 3 stages" in out.stdout, log
    for stage in ("volume", "os", "packages"):
        assert f"{stage:<8} running" not in log
