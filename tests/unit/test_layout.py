from __future__ import annotations

import re

import pytest

from vzstages.units import MiB, parse_size
from vzstages.volume.layout import LayoutError, compute_layout


def test_parse_size_units():
    assert parse_size("512MiB") == 512 * MiB
    assert parse_size("2GiB") == 2048 * MiB
    assert parse_size("1GB") == 1000**3
    assert parse_size("20G") == 20 * 1024 * MiB  # one parser: a G is a GiB for `cache gc` too
    for bad in ("2 gigs", "", "1y", "-1G", "1e9", "9" * 40 + "TiB", "\uff11G"):
        with pytest.raises(ValueError):
            parse_size(bad)


def test_absurd_disks_are_refused():
    with pytest.raises(LayoutError, match="at most 64 TiB"):
        compute_layout({"type": "gpt", "root": {"size": "99999999999TiB", "filesystem": "ext4"}}, "grub")
    with pytest.raises(LayoutError, match="msdos table addresses at most 2 TiB"):
        compute_layout({"type": "msdos", "root": {"size": "3TiB", "filesystem": "ext4"}}, "grub")


def test_gpt_with_grub_has_bios_boot_first_and_root_last():
    layout = compute_layout(
        {
            "type": "gpt",
            "root": {"filesystem": "ext4", "size": "1GiB"},
            "swap": {"size": "128MiB"},
            "boot": {"filesystem": "ext2", "size": "64MiB"},
        },
        "grub",
    )
    assert [p.name for p in layout.partitions] == ["bios_boot", "boot", "swap", "root"]
    assert [p.number for p in layout.partitions] == [1, 2, 3, 4]
    assert layout.partitions[0].start == MiB
    for a, b in zip(layout.partitions, layout.partitions[1:], strict=False):
        assert b.start == a.start + a.size
    assert layout.disk_size == layout.root.start + layout.root.size + MiB  # backup GPT
    script = layout.sfdisk_script()
    assert "label: gpt" in script and "type=21686148-6449-6E6F-744E-656564454649" in script


def test_mount_order_parents_first():
    layout = compute_layout(
        {
            "type": "gpt",
            "root": {"filesystem": "ext4", "size": "1GiB"},
            "var/tmp": {"filesystem": "ext4", "size": "64MiB"},
            "var": {"filesystem": "ext4", "size": "64MiB"},
        },
        "grub",
    )
    assert [p.mountpoint for p in layout.mounted()] == ["/", "/var", "/var/tmp"]


def test_msdos_marks_boot_partition_bootable():
    layout = compute_layout({"type": "msdos", "root": {"filesystem": "ext4", "size": "1GiB"}}, "extlinux")
    assert "bootable" in layout.sfdisk_script().splitlines()[-1]
    assert layout.disk_size == MiB + 1024 * MiB


def test_unpartitioned_holds_only_root():
    with pytest.raises(LayoutError, match="holds only root"):
        compute_layout(
            {"type": "none", "root": {"filesystem": "ext4", "size": "1GiB"}, "swap": {"size": "1GiB"}}, "none"
        )
    layout = compute_layout({"type": "none", "root": {"filesystem": "ext4", "size": "1GiB"}}, "none")
    assert layout.root.start == 0 and layout.root.number is None


def test_uefi_puts_an_efi_system_partition_first_and_root_last():
    layout = compute_layout(
        {"type": "gpt", "root": {"filesystem": "ext4", "size": "1GiB"}, "swap": {"size": "128MiB"}},
        "grub",
        "uefi",
    )
    assert [p.name for p in layout.partitions] == ["efi", "swap", "root"]
    efi = layout.partitions[0]
    assert (efi.filesystem, efi.mountpoint, efi.size, efi.mountopts) == (
        "vfat",
        "/boot/efi",
        127 * MiB,
        ("umask=0077",),
    )
    assert [p.name for p in layout.mounted()] == ["root", "efi"]  # / before /boot/efi
    script = layout.sfdisk_script()
    assert "type=C12A7328-F80D-11D2-BA4B-00A0C93EC93B, name=efi" in script
    assert "21686148-6449-6E6F-744E-656564454649" not in script  # no BIOS boot partition


def test_uefi_needs_gpt():
    with pytest.raises(LayoutError, match="UEFI images need a gpt partition table, not msdos") as caught:
        compute_layout({"type": "msdos", "root": {"filesystem": "ext4", "size": "1GiB"}}, "grub", "uefi")
    assert caught.value.keypath == ("volume", "partitions", "type")


def test_hybrid_has_a_bios_boot_and_an_efi_system_partition_before_root():
    layout = compute_layout({"type": "gpt", "root": {"size": "2GiB", "filesystem": "ext4"}}, "grub", "hybrid")
    assert [(p.name, p.number) for p in layout.partitions] == [("bios_boot", 1), ("efi", 2), ("root", 3)]
    assert layout.boot.number == 3
    with pytest.raises(LayoutError, match="Hybrid BIOS\\+UEFI images need a gpt"):
        compute_layout({"type": "msdos", "root": {"size": "2GiB", "filesystem": "ext4"}}, "grub", "hybrid")


def test_extlinux_boots_an_unpartitioned_volume_from_its_filesystem():
    layout = compute_layout({"type": "none", "root": {"size": "2GiB", "filesystem": "ext4"}}, "extlinux")
    assert [(p.name, p.start) for p in layout.partitions] == [("root", 0)]


def test_root_on_lvm_is_a_linear_volume_inside_its_partition():
    from vzstages.volume.layout import Lvm

    layout = compute_layout(
        {"type": "gpt", "root": {"size": "2GiB", "filesystem": "ext4"}}, "grub", "bios", Lvm("vg0", "root")
    )
    names = [(p.name, p.number, p.filesystem, p.logical) for p in layout.partitions]
    assert names == [("bios_boot", 1, None, False), ("lvm", 2, "lvm", False), ("root", None, "ext4", True)]
    pv, root = layout.partitions[1], layout.root
    assert root.start == pv.start + MiB and root.size == 2047 * MiB // (4 * MiB) * 4 * MiB
    assert "E6D6D379" in layout.sfdisk_script() and layout.sfdisk_script().count("start=") == 2
    assert layout.lvm is not None and layout.lvm.device == "/dev/mapper/vg0-root"
    assert Lvm("my-vg", "root").device == "/dev/mapper/my--vg-root"
    assert [p.name for p in layout.build_mounts()] == ["root"]


def test_the_host_tools_named_for_a_layout_are_real_programs():
    from vzstages.common.partitions import format_tools
    from vzstages.volume.layout import Lvm

    on_lvm = compute_layout(
        {
            "type": "msdos",
            "boot": {"size": "256MiB", "filesystem": "ext4"},
            "root": {"size": "2GiB", "filesystem": "xfs"},
        },
        "extlinux",
        "bios",
        Lvm("vg0", "root"),
    )
    assert format_tools(on_lvm) == {
        "sfdisk",
        "mkfs.ext4",
        "mkfs.xfs",
        "pvcreate",
        "vgcreate",
        "lvcreate",
        "pvs",
    }
    swap = compute_layout(
        {"type": "gpt", "swap": {"size": "128MiB"}, "root": {"size": "2GiB", "filesystem": "ext4"}}, "grub"
    )
    assert format_tools(swap) == {"sfdisk", "mkswap", "mkfs.ext4"}


def test_the_lv_segment_is_read_past_lvm_warnings():
    from vzstages.common.partitions import lv_segment
    from vzstages.errors import VzError

    report = (
        "  WARNING: Activation disabled. No device-mapper interaction will be attempted.\n"
        "      0    74 4194304 1048576 root\n"
    )
    assert lv_segment(report, "root") == (0, 74, 4194304, 1048576)
    with pytest.raises(VzError, match="0 segments"):
        lv_segment(report, "home")


def test_the_tables_identities_follow_the_seed():
    """The same key gives the same partition table; another key, other GUIDs."""
    layout = compute_layout({"type": "gpt", "root": {"filesystem": "ext4", "size": "1GiB"}}, "grub")
    one, again, other = (
        layout.sfdisk_script("a" * 32),
        layout.sfdisk_script("a" * 32),
        layout.sfdisk_script("b" * 32),
    )
    assert one == again and one != other
    assert "label-id: " in one and one.count("uuid=") == 2  # bios_boot and root
    msdos = compute_layout({"type": "msdos", "root": {"filesystem": "ext4", "size": "1GiB"}}, "grub")
    assert re.search(r"^label-id: 0x[0-9a-f]{8}$", msdos.sfdisk_script("a" * 32), re.MULTILINE)
