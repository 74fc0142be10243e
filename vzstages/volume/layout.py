"""The partition layout a manifest asks for, computed without touching a disk.

Root is always the last partition so that it can grow into a larger disk (expand_root).
Every partition starts on a MiB boundary; gpt keeps 1 MiB free at the end for its backup header.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from ..units import MiB, TiB, parse_size

# GPT partition type GUIDs and MBR type ids.
GPT_BIOS_BOOT = "21686148-6449-6E6F-744E-656564454649"
GPT_EFI_SYSTEM = "C12A7328-F80D-11D2-BA4B-00A0C93EC93B"
GPT_LINUX = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
GPT_SWAP = "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F"
GPT_LVM = "E6D6D379-F507-44C2-A23C-238F2A3DF928"
MBR_LINUX = "83"
MBR_SWAP = "82"
MBR_LVM = "8e"
# Where LVM puts a PV's first extent and how large extents are, given `pvcreate --dataalignment
# 1m` and `vgcreate --physicalextentsize 4m`: the root LV's place in its partition follows.
LVM_DATA_OFFSET = MiB
LVM_EXTENT = 4 * MiB

BIOS_BOOT_SIZE = MiB
# As Debian's own cloud images: room for a few EFI binaries, and large enough for FAT32.
EFI_SYSTEM_SIZE = 127 * MiB
# mkfs refuses, or makes a useless filesystem, below these.
MIN_FS_SIZE = {"ext2": 4 * MiB, "ext3": 8 * MiB, "ext4": 16 * MiB, "xfs": 300 * MiB}
# The largest disk the clouds take (an EBS volume, a GCE disk); an msdos table addresses 2 TiB.
MAX_DISK_SIZE = 64 * TiB
MAX_MSDOS_DISK_SIZE = 2 * TiB


# Identities in an image (GUIDs, UUIDs, ids) are derived from the stage key with this namespace,
# so they are stable for one key and differ between images that differ.
IDENTITY_NAMESPACE = uuid.UUID("5b1f6a0e-6d2b-4f4e-9a51-7a2a6b7f0c11")


def identity(seed: str, what: str) -> uuid.UUID:
    return uuid.uuid5(IDENTITY_NAMESPACE, f"{seed}:{what}")


class LayoutError(ValueError):
    """A layout that cannot be built; `keypath` says which manifest key is at fault."""

    def __init__(self, keypath: tuple[str, ...], message: str):
        self.keypath = keypath
        super().__init__(message)


def _round_mib(size: int) -> int:
    return -(-size // MiB) * MiB


@dataclass(frozen=True)
class Partition:
    name: str  # manifest key: root, boot, swap, var, tmp, var/tmp ... or bios_boot, efi
    number: int | None  # 1-based number in the table; None on an unpartitioned volume
    start: int  # bytes from the start of the disk
    size: int  # bytes
    filesystem: str | None  # ext2/3/4, xfs; vfat (EFI system); "swap"; None for BIOS boot
    mountopts: tuple[str, ...] = ()
    mode: str | None = None
    # A logical volume inside the LVM partition: not in the partition table, but a contiguous
    # range of the disk all the same (a linear LV), attached at its offset like a partition.
    logical: bool = False

    @property
    def mountpoint(self) -> str | None:
        if self.filesystem in (None, "swap", "lvm"):
            return None
        return {"root": "/", "efi": "/boot/efi"}.get(self.name, "/" + self.name)

    @property
    def label(self) -> str:
        return self.name.replace("/", "-")


@dataclass(frozen=True)
class Layout:
    table: str  # none, msdos, gpt
    disk_size: int
    partitions: tuple[Partition, ...]
    bootloader: str = "none"
    firmware: str = "bios"  # bios, uefi or hybrid (both, from one gpt disk)
    lvm: Lvm | None = None  # root on a logical volume (volume.backing: lvm)

    def get(self, name: str) -> Partition | None:
        return next((p for p in self.partitions if p.name == name), None)

    @property
    def root(self) -> Partition:
        root = self.get("root")
        assert root is not None  # a layout is never built without one
        return root

    @property
    def boot(self) -> Partition:
        """The partition holding the kernels: /boot if it has its own, else root."""
        return self.get("boot") or self.root

    @property
    def boot_dir(self) -> str:
        """/boot as the bootloader sees it on the boot filesystem: "" when /boot has its own."""
        return "" if self.get("boot") else "/boot"

    def mounted(self) -> list[Partition]:
        """Partitions with a filesystem, parents before children ('/' before /var before /var/tmp)."""
        with_fs = [p for p in self.partitions if p.mountpoint]
        return sorted(
            with_fs, key=lambda p: (p.mountpoint or "").rstrip("/").count("/") if p.name != "root" else -1
        )

    def build_mounts(self) -> list[Partition]:
        """What the build mounts: all but the EFI system partition. FAT may be a kernel module
        that a container cannot load, so grub's EFI binary goes onto it with mtools instead."""
        return [p for p in self.mounted() if p.filesystem != "vfat"]

    def sfdisk_script(self, seed: str = "") -> str:
        """The table for sfdisk. Its identities (the disk's GUID or id, each GPT partition's
        GUID) come from `seed`, the stage key: the same key gives the same table, byte for byte."""
        lines = [f"label: {'dos' if self.table == 'msdos' else 'gpt'}", "unit: sectors"]
        if self.table == "gpt":
            lines.append(f"label-id: {identity(seed, 'disk')}")
        else:
            lines.append(f"label-id: 0x{identity(seed, 'disk').hex[:8]}")
        boot_flag = self.boot.name
        for p in (p for p in self.partitions if not p.logical):
            fields = [f"start={p.start // 512}", f"size={p.size // 512}", f"type={self._type(p)}"]
            if self.table == "gpt":
                fields.append(f"name={p.label}")
                fields.append(f"uuid={identity(seed, 'partition:' + p.name)}")
                if p.name == boot_flag and self.bootloader == "extlinux":
                    fields.append("attrs=LegacyBIOSBootable")  # gptmbr.bin boots the flagged one
            elif p.name == boot_flag:
                fields.append("bootable")
            lines.append(", ".join(fields))
        return "\n".join(lines) + "\n"

    def _type(self, p: Partition) -> str:
        if self.table == "gpt":
            return {None: GPT_BIOS_BOOT, "swap": GPT_SWAP, "vfat": GPT_EFI_SYSTEM, "lvm": GPT_LVM}.get(
                p.filesystem, GPT_LINUX
            )
        return {"swap": MBR_SWAP, "lvm": MBR_LVM}.get(p.filesystem or "", MBR_LINUX)


@dataclass(frozen=True)
class Lvm:
    """Root on a logical volume: the volume group on one partition, one linear LV filling it."""

    volume_group: str
    logical_volume: str

    @property
    def device(self) -> str:
        """The root device as the booted system's initramfs names it."""
        vg, lv = (name.replace("-", "--") for name in (self.volume_group, self.logical_volume))
        return f"/dev/mapper/{vg}-{lv}"


def compute_layout(
    partitions: dict[str, Any], bootloader: str, firmware: str = "bios", lvm: Lvm | None = None
) -> Layout:
    """Lay out the manifest's `volume.partitions`; raise LayoutError naming the faulty key.
    grub gets the partition its firmware boots it from: a BIOS boot partition on gpt (an msdos
    disk keeps core.img in the gap before the first partition), or an EFI system partition.
    With `lvm`, root's partition holds the volume group, and root is its one logical volume."""
    table = partitions["type"]
    base = ("volume", "partitions")
    if bootloader == "grub" and firmware in ("uefi", "hybrid") and table != "gpt":
        kind = "UEFI" if firmware == "uefi" else "Hybrid BIOS+UEFI"
        raise LayoutError((*base, "type"), f"{kind} images need a gpt partition table, not {table}")
    specs = _partition_order(partitions, bootloader, firmware)
    if table == "none":
        return _unpartitioned(specs, partitions["root"], bootloader, firmware, lvm)
    if table == "msdos" and len(specs) > 4:
        raise LayoutError(
            (*base,),
            f"an msdos table holds at most 4 partitions, this one needs {len(specs)} (use type: gpt)",
        )
    offset = MiB
    laid_out = []
    for number, (name, spec) in enumerate(specs, start=1):
        if name == "bios_boot":
            size, fs = BIOS_BOOT_SIZE, None
        elif name == "efi":
            size, fs, spec = EFI_SYSTEM_SIZE, "vfat", {"mountopts": ["umask=0077"]}
        elif name == "swap":
            size, fs = _round_mib(_checked_size(spec, (*base, name), "swap")), "swap"
        else:
            size, fs = _round_mib(_checked_size(spec, (*base, name))), spec["filesystem"]
        laid_out.append(
            Partition(name, number, offset, size, fs, tuple(spec.get("mountopts", ())), spec.get("mode"))
        )
        offset += size
    disk_size = offset + (MiB if table == "gpt" else 0)
    _check_disk_size(disk_size, table)
    if lvm is not None:
        laid_out[-1:] = _on_lvm(laid_out[-1])
    return Layout(table, disk_size, tuple(laid_out), bootloader, firmware, lvm)


def _partition_order(
    partitions: dict[str, Any], bootloader: str, firmware: str
) -> list[tuple[str, dict[str, Any]]]:
    """The partitions in disk order: grub's own first, then boot, swap, the extra mounts in the
    manifest's order, and root last so that it can grow."""
    specs: list[tuple[str, dict[str, Any]]] = []
    # Debian's cloud images boot both ways: a BIOS boot partition for grub's core image, then an
    # EFI system partition.
    if partitions["type"] == "gpt" and bootloader == "grub" and firmware in ("bios", "hybrid"):
        specs.append(("bios_boot", {}))
    if bootloader == "grub" and firmware in ("uefi", "hybrid"):
        specs.append(("efi", {}))
    names = [k for k in partitions if k not in ("type", "root")]
    names.sort(key=lambda n: {"boot": 0, "swap": 1}.get(n, 2))
    return [*specs, *((n, partitions[n]) for n in names), ("root", partitions["root"])]


def _unpartitioned(
    specs: list[tuple[str, dict[str, Any]]],
    root: dict[str, Any],
    bootloader: str,
    firmware: str,
    lvm: Lvm | None,
) -> Layout:
    base = ("volume", "partitions")
    if len(specs) > 1:
        extra = specs[0][0]
        raise LayoutError(
            (*base, extra), f"an unpartitioned volume (type: none) holds only root, not '{extra}'"
        )
    if lvm is not None:
        raise LayoutError(
            (*base, "type"), "root on LVM needs a partition for the volume group: use msdos or gpt"
        )
    size = _checked_size(root, (*base, "root"))
    _check_disk_size(size, "none")
    part = Partition(
        "root", None, 0, size, root["filesystem"], tuple(root.get("mountopts", ())), root.get("mode")
    )
    return Layout("none", size, (part,), bootloader, firmware)


def _on_lvm(root: Partition) -> list[Partition]:
    """Root's partition becomes the LVM physical volume, and root its logical volume: linear,
    from the first extent, as many whole extents as the partition holds after LVM's header."""
    pv = Partition("lvm", root.number, root.start, root.size, "lvm")
    size = (root.size - LVM_DATA_OFFSET) // LVM_EXTENT * LVM_EXTENT
    lv = Partition(
        "root", None, root.start + LVM_DATA_OFFSET, size, root.filesystem, root.mountopts, root.mode, True
    )
    return [pv, lv]


def _check_disk_size(size: int, table: str) -> None:
    base = ("volume", "partitions")
    if size > MAX_DISK_SIZE:
        raise LayoutError(base, f"the partitions add up to {size / TiB:.1f} TiB; a disk holds at most 64 TiB")
    if table == "msdos" and size > MAX_MSDOS_DISK_SIZE:
        raise LayoutError(
            (*base, "type"),
            f"an msdos table addresses at most 2 TiB, these partitions need {size / TiB:.1f} TiB; use gpt",
        )


def _checked_size(spec: dict[str, Any], keypath: tuple[str, ...], fs: str | None = None) -> int:
    size = parse_size(spec["size"])
    filesystem = fs or spec["filesystem"]
    minimum = MIN_FS_SIZE.get(filesystem, MiB)
    if size < minimum:
        raise LayoutError(
            (*keypath, "size"), f"{spec['size']} is too small for {filesystem} (at least {minimum // MiB}MiB)"
        )
    return size
