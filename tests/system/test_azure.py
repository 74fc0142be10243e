"""Azure: the fixed VHD as Azure takes it, booting both ways (BIOS and UEFI) from one disk, with
what Debian's own Azure images carry inside."""

from __future__ import annotations

import json
import subprocess

import pytest

from vzstages.boottest import boot
from vzstages.providers.azure.vhd import read_footer

from ..conftest import REPO
from .conftest import BOOT_TIMEOUT, image_tree, nothing_left, vzstages, with_workspace

pytestmark = pytest.mark.system


def test_azure_vhd_is_fixed_and_boots_under_seabios_and_ovmf(cache, workspace, tmp_path):
    manifest = with_workspace(REPO / "manifests/azure.yml", workspace, tmp_path / "azure.yml")
    out = vzstages("build", str(manifest), cache=cache)
    assert "waagent.version: accepted and not used" in out.stderr
    nothing_left(cache)
    image = workspace / "debian-bookworm-amd64-azure.vhd"
    footer = read_footer(image)
    assert footer.current_size % (1 << 20) == 0 and image.stat().st_size == footer.current_size + 512
    info = json.loads(
        subprocess.run(
            ["qemu-img", "info", "-f", "vpc", "--output=json", str(image)], capture_output=True, check=True
        ).stdout
    )
    assert info["format"] == "vpc" and info["virtual-size"] == footer.current_size

    with image_tree(manifest, cache, tmp_path / "inspect") as tree:
        root = tree.root
        assert "Provisioning.Agent=cloud-init" in (root / "etc/waagent.conf").read_text()
        assert "Azure" in (root / "etc/cloud/cloud.cfg.d/10_vzstages_azure.cfg").read_text()
        assert "/dev/ptp_hyperv" in (root / "etc/chrony/conf.d/azure.conf").read_text()
        assert "hv_netvsc" in (root / "etc/initramfs-tools/modules").read_text()
        cmdline = (root / "boot/grub/grub.cfg").read_text()
        assert "console=ttyS0,115200n8 earlyprintk=ttyS0,115200" in cmdline and "rootdelay" not in cmdline
        status = (root / "var/lib/dpkg/status").read_text()
        for package in ("waagent", "cloud-init", "hyperv-daemons", "chrony", "linux-image-cloud-amd64"):
            assert f"Package: {package}\n" in status, package
        assert not list((root / "etc/ssh").glob("ssh_host_*"))

    for firmware in ("bios", "uefi"):
        report = boot(
            image,
            hostname="vzstages-azure",
            timeout=BOOT_TIMEOUT,
            firmware=firmware,
            console_log=tmp_path / f"{firmware}.log",
        )
        assert report.ok, f"{firmware}: {report.failure}; {report.missing}; {report.console[-3000:]}"
        if firmware == "uefi":
            assert "efi: EFI v" in report.console
