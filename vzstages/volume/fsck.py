"""An image is checked before it is reported: a read-only fsck of every filesystem in it.

Whatever made the image (a chain of checkpoints from this host, from a remote cache, from a
tmpfs), the build does not say "done" over a filesystem that does not pass its own checker.
The image is opened read-only (qemu-storage-daemon, read-only loops), so checking changes nothing.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import VzError
from ..host import Host
from .disk import attached, exported
from .layout import Layout, Partition
from .runs import run_folder

# The checker of each filesystem, in a mode that reports and never repairs: exit 0 means clean.
FSCK = {
    "ext2": ["e2fsck", "-f", "-n"],
    "ext3": ["e2fsck", "-f", "-n"],
    "ext4": ["e2fsck", "-f", "-n"],
    "xfs": ["xfs_repair", "-n"],
    "vfat": ["fsck.vfat", "-n"],
}
FSCK_TOOLS = {"e2fsck", "xfs_repair", "fsck.vfat"}


class CorruptImage(VzError):
    pass


def checked_partitions(layout: Layout) -> list[Partition]:
    return [p for p in layout.partitions if p.filesystem in FSCK]


def tools_for(layout: Layout) -> set[str]:
    return {FSCK[p.filesystem][0] for p in checked_partitions(layout) if p.filesystem}


def check_image(host: Host, image: Path, fmt: str, layout: Layout, runs: Path) -> list[str]:
    """fsck every filesystem of `image` (a qemu format: qcow2, raw, vmdk, vdi, vpc), read-only;
    CorruptImage naming the partition and the checker's last lines if one is not clean.
    Returns one line per filesystem checked."""
    checked = []
    with (
        run_folder(runs, "fsck") as folder,
        exported(host, image, folder, fmt=fmt, writable=False) as raw,
        attached(host, raw, layout, read_only=True) as disk,
    ):
        for part in checked_partitions(layout):
            assert part.filesystem is not None
            result = host.run([*FSCK[part.filesystem], disk.partition_device(part)], check=False)
            if result.returncode != 0:
                tail = "\n    ".join(result.output.strip().splitlines()[-6:])
                raise CorruptImage(
                    f"{image.name}: the {part.name} filesystem ({part.filesystem}) fails "
                    f"{FSCK[part.filesystem][0]} (exit {result.returncode}); the image is not "
                    f"usable:\n    {tail}"
                )
            checked.append(f"{part.name} ({part.filesystem}) clean")
    return checked
