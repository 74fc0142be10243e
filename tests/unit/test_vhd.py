"""The VHD footer check Azure's upload makes, on VHDs qemu-img writes."""

from __future__ import annotations

import subprocess

import pytest

from vzstages.providers.azure.vhd import VhdError, read_footer


def make(tmp_path, size: str, *options: str):
    raw = tmp_path / "disk.raw"
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(raw), size], check=True)
    out = tmp_path / "disk.vhd"
    subprocess.run(["qemu-img", "convert", "-O", "vpc", *options, str(raw), str(out)], check=True)
    return out


def test_a_fixed_vhd_of_whole_mib_is_what_azure_takes(tmp_path):
    vhd = make(tmp_path, "3M", "-o", "subformat=fixed,force_size=on")
    footer = read_footer(vhd)
    assert footer.current_size == 3 << 20 and footer.disk_type == 2
    assert vhd.stat().st_size == (3 << 20) + 512


def test_a_dynamic_vhd_is_refused(tmp_path):
    with pytest.raises(VhdError, match="not fixed"):
        read_footer(make(tmp_path, "3M", "-o", "force_size=on"))


def test_a_damaged_footer_is_refused(tmp_path):
    vhd = make(tmp_path, "3M", "-o", "subformat=fixed,force_size=on")
    data = bytearray(vhd.read_bytes())
    data[-512 + 50] ^= 1  # inside current size: the checksum no longer matches
    vhd.write_bytes(bytes(data))
    with pytest.raises(VhdError, match="checksum"):
        read_footer(vhd)
    vhd.write_bytes(b"\0" * 1024)
    with pytest.raises(VhdError, match="no VHD footer"):
        read_footer(vhd)


def test_two_conversions_settled_under_one_key_are_the_same_bytes(tmp_path):
    from vzstages.common.image_ids import settle
    from vzstages.volume.layout import identity

    made = []
    for name in ("one", "two"):
        folder = tmp_path / name
        folder.mkdir()
        vhd = make(folder, "3M", "-o", "subformat=fixed,force_size=on")
        settle("vhd", vhd, vhd.name, "a" * 32, 1700000000)
        assert read_footer(vhd).current_size == 3 << 20  # the checksum holds
        made.append(vhd.read_bytes())
    assert made[0] == made[1]
    assert made[0][-512 + 68 : -512 + 84] == identity("a" * 32, "vhd").bytes
