"""The volume stage: partition the exported disk and format each partition."""

from __future__ import annotations

from ..errors import VzError
from ..model.info import BuildInfo
from ..model.phases import Phase
from ..model.task import Task
from ..volume.layout import Layout, Partition, identity

# The time mke2fs writes into the superblock and the root directory: a constant, since the volume
# stage's key names no date (reproducible-builds.org: no build time in the image).
MKFS_TIME = "1672531200"  # 2023-01-01T00:00:00Z

MKFS_ARGS = {
    "ext2": ["mkfs.ext2", "-q", "-F"],
    "ext3": ["mkfs.ext3", "-q", "-F"],
    "ext4": ["mkfs.ext4", "-q", "-F"],
    "xfs": ["mkfs.xfs", "-q", "-f"],
    "vfat": ["mkfs.vfat", "-F", "32"],
}


def format_tools(layout: Layout) -> set[str]:
    """The host programs the volume stage runs to partition and format `layout`."""
    tools = {"sfdisk"} if layout.table != "none" else set()
    for part in layout.partitions:
        if part.filesystem == "swap":
            tools.add("mkswap")
        elif part.filesystem in MKFS_ARGS:
            tools.add(MKFS_ARGS[part.filesystem][0])
    if layout.lvm is not None:
        tools |= {"pvcreate", "vgcreate", "lvcreate", "pvs"}
    return tools


# The layout depends on these (the firmware picks a BIOS boot or an EFI system partition).
LAYOUT_KEYS = (
    "volume.partitions",
    "volume.backing",
    "volume.volumegroup",
    "volume.logicalvolume",
    "system.bootloader",
    "system.firmware",
    "system.architecture",
)
# LVM run against one loop device only: no device-mapper (activation off), no host devices
# scanned, no backups in the host's /etc/lvm.
LVM_CONFIG = (
    "global {{ activation = 0 }} backup {{ backup = 0 archive = 0 }} "
    'devices {{ filter = [ "a|^{device}$|", "r|.*|" ] scan_lvs = 0 obtain_device_list_from_udev = 0 }}'
)


def partition_uuid(key: str, part: Partition) -> str:
    """A filesystem's UUID (kept as before: checkpoints' fstab and grub name it)."""
    return str(identity(key, part.name))


class PartitionDisk(Task):
    description = "Writing the partition table"
    phase = Phase.VOLUME_CREATION
    reads = LAYOUT_KEYS
    host_packages = ("fdisk",)

    @classmethod
    def run(cls, info: BuildInfo) -> None:
        assert info.disk is not None
        if info.layout.table == "none":
            return
        info.host.run(
            ["sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", str(info.disk.raw)],
            input=info.layout.sfdisk_script(seed=info.key),
        )


class FormatPartitions(Task):
    description = "Formatting the partitions"
    phase = Phase.VOLUME_PREPARATION
    reads = LAYOUT_KEYS
    host_packages = ("e2fsprogs", "xfsprogs", "dosfstools", "lvm2", "util-linux")

    @classmethod
    def run(cls, info: BuildInfo) -> None:
        assert info.disk is not None
        uuids = {}
        for part in info.layout.partitions:
            if part.filesystem is None:
                continue  # the BIOS boot partition holds grub's core image, not a filesystem
            device = info.disk.partition_device(part)
            if part.filesystem == "lvm":
                create_volume_group(info, device)
                continue
            fs_uuid = partition_uuid(info.key, part)
            if part.filesystem == "swap":
                info.host.run(["mkswap", "-U", fs_uuid, "-L", part.label, device])
            elif part.filesystem == "vfat":
                # FAT has a 32-bit volume id, not a UUID: blkid shows it as XXXX-XXXX.
                volume_id = fs_uuid[:8].upper()
                vfat = [*MKFS_ARGS["vfat"], "--invariant", "-i", volume_id, "-n", part.label.upper()[:11]]
                info.host.run([*vfat, device])
                fs_uuid = f"{volume_id[:4]}-{volume_id[4:]}"
            elif part.filesystem == "xfs":
                info.host.run([*MKFS_ARGS["xfs"], "-m", f"uuid={fs_uuid}", "-L", part.label[:12], device])
            else:
                seed = identity(info.key, f"hash_seed:{part.name}")
                # Inode tables and journal zeroed now, not by the kernel in the background of a
                # later stage (whose checkpoint would then hold more or less of it by chance).
                extended = f"hash_seed={seed},lazy_itable_init=0,lazy_journal_init=0"
                ext = [*MKFS_ARGS[part.filesystem], "-U", fs_uuid, "-E", extended]
                info.host.run([*ext, "-L", part.label[:16], device], env={"E2FSPROGS_FAKE_TIME": MKFS_TIME})
            uuids[part.name] = fs_uuid
        info.facts["uuids"] = uuids


def create_volume_group(info: BuildInfo, device: str) -> None:
    """The volume group on its partition and root's logical volume filling it, written without
    device-mapper (build hosts and CI containers have none): LVM's metadata is plain data, and a
    linear LV is a range of the partition that the layout has already placed."""
    lvm = info.layout.lvm
    assert lvm is not None
    config = ["--config", LVM_CONFIG.format(device=device)]
    info.host.run(["pvcreate", *config, "-qq", "-y", "--dataalignment", "1m", device])
    info.host.run(["vgcreate", *config, "-qq", "--physicalextentsize", "4m", lvm.volume_group, device])
    create = ["lvcreate", *config, "-qq", "--activate", "n", "--zero", "n", "-l", "100%FREE"]
    info.host.run([*create, "-n", lvm.logical_volume, lvm.volume_group])
    # Where the LV's one segment lies on the PV (pvs: lvs cannot report PV fields per segment).
    columns = ["-o", "pvseg_start,pvseg_size,vg_extent_size,pe_start,lv_name"]
    report = ["pvs", *config, "--noheadings", "--nosuffix", "--units", "b", "--segments", *columns]
    output = info.host.run([*report, device]).output
    start_pe, size_pe, extent, pe_start = lv_segment(output, lvm.logical_volume)
    root = info.layout.root
    part = next(p for p in info.layout.partitions if p.filesystem == "lvm")
    if (part.start + pe_start + start_pe * extent, size_pe * extent) != (root.start, root.size):
        raise VzError(
            f"LVM placed {lvm.volume_group}/{lvm.logical_volume} at {pe_start + start_pe * extent} "
            f"({size_pe * extent} bytes) in its partition, not where the layout expects it"
        )


def lv_segment(report: str, logical_volume: str) -> tuple[int, int, int, int]:
    """(first extent, extents, extent size, data start) of the LV's segment, from `pvs --segments`
    output (its warnings are on the same stream)."""
    rows = [line.split() for line in report.splitlines()]
    segments = [row for row in rows if len(row) == 5 and row[4] == logical_volume and row[0].isdigit()]
    if len(segments) != 1:
        raise VzError(f"LVM reports {len(segments)} segments for {logical_volume}, not one:\n{report}")
    start_pe, size_pe, extent, pe_start = (int(x) for x in segments[0][:4])
    return start_pe, size_pe, extent, pe_start
