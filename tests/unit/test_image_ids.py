"""The ids qemu-img writes from its clock and randomness into vmdk and vdi files, made stable
(common/image_ids.py): two conversions of one disk under one key are the same bytes."""

from __future__ import annotations

import subprocess

import pytest

from vzstages.common import image_ids
from vzstages.volume.layout import identity


def converted(tmp_path, fmt: str, options: list[str], name: str):
    raw = tmp_path / "disk.raw"
    if not raw.exists():
        subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(raw), "8M"], check=True)
        raw.write_bytes(b"data" * 1000 + b"\0" * (8 * 2**20 - 4000))
    out = tmp_path / name
    subprocess.run(["qemu-img", "convert", "-O", fmt, *options, str(raw), str(out)], check=True)
    return out


@pytest.mark.parametrize("fmt, options", [("vmdk", ["-o", "subformat=monolithicSparse"]), ("vdi", [])])
def test_two_conversions_under_one_key_are_the_same_bytes(tmp_path, fmt, options):
    files = [converted(tmp_path, fmt, options, f".tmp-{n}.{fmt}") for n in ("one", "second")]
    assert files[0].read_bytes() != files[1].read_bytes()  # qemu-img's own ids differ
    for file in files:
        image_ids.settle(fmt, file, f"debian.{fmt}", "a" * 32, 1700000000)
    assert files[0].read_bytes() == files[1].read_bytes()
    check = subprocess.run(["qemu-img", "check", "-f", fmt, str(files[0])], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    if fmt == "vmdk":
        head = files[0].read_bytes()[:20000]
        assert b'SPARSE "debian.vmdk"' in head
        assert b"\nCID=%08x\n" % (identity("a" * 32, "vmdk").int & 0xFFFFFFFE) in head


def test_a_short_cid_is_settled_too(tmp_path):
    """qemu-img writes the CID unpadded: one below 0x10000000 has fewer than 8 digits."""
    vmdk = converted(tmp_path, "vmdk", ["-o", "subformat=streamOptimized"], "box-disk1.vmdk")
    data = bytearray(vmdk.read_bytes())
    at = data.index(b"\nCID=") + 5
    end = data.index(b"\n", at)
    data[at:end] = b"1234567".ljust(end - at, b"\n")  # 7 digits, then the line's own newline
    vmdk.write_bytes(bytes(data))
    image_ids.settle("vmdk", vmdk, "box-disk1.vmdk", "c" * 32, 1700000000)
    assert b"\nCID=%08x\n" % (identity("c" * 32, "vmdk").int & 0xFFFFFFFE) in vmdk.read_bytes()[:20000]
