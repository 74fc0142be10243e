"""extlinux (syslinux) for BIOS: simpler than grub, for msdos or gpt disks with ext2/3/4 /boot."""

from __future__ import annotations

from ..model.info import BuildInfo
from ..model.phases import Phase
from ..model.task import Task
from .apt import AptInstall
from .bootable import InstallKernel, boot_paths, kernel_cmdline
from .system import InstallSystemPackages


class InstallExtlinuxPackages(AptInstall):
    description = "Installing extlinux"
    predecessors = (InstallSystemPackages,)
    successors = (InstallKernel,)
    packages = ("extlinux", "syslinux-common")


class InstallExtlinux(Task):
    description = "Installing extlinux to the disk"
    phase = Phase.SYSTEM_MODIFICATION
    reads = ("provider.console", "system.architecture")  # kernel_cmdline

    @classmethod
    def run(cls, info: BuildInfo) -> None:
        assert info.disk is not None
        layout = info.layout
        info.chroot(["mkdir", "-p", "/boot/extlinux"])
        info.chroot(["extlinux", "--install", "/boot/extlinux"])
        kernel, initrd = boot_paths(info)
        cmdline = kernel_cmdline(info)
        serial = "SERIAL 0 115200\n" if "console=ttyS0" in cmdline else ""
        (info.target / "boot/extlinux/extlinux.conf").write_text(
            f"{serial}DEFAULT debian\nTIMEOUT 10\nPROMPT 0\n\n"
            f"LABEL debian\n  LINUX {kernel}\n  INITRD {initrd}\n  APPEND {cmdline}\n"
        )
        if layout.table == "none":
            # The filesystem starts at the disk's first sector, and extlinux --install wrote its
            # boot sector there (ext2/3/4 leave their first KiB to a boot loader): the BIOS loads
            # it as it would an MBR, as bootstrap-vz's unpartitioned EC2 images booted.
            return
        disk = info.disk.whole_device()
        # The partition table marks the boot partition (bootable / LegacyBIOSBootable) already.
        mbr = "gptmbr.bin" if layout.table == "gpt" else "mbr.bin"
        # The first 440 bytes only: the partition table after them stays as it is.
        mbr_file = (info.target / "usr/lib/syslinux/mbr" / mbr).host_path()
        info.host.run(["dd", f"if={mbr_file}", f"of={disk}", "bs=440", "count=1", "conv=notrunc"])
