"""grub for BIOS, installed by hand.

grub-probe cannot relate a filesystem on an offset loop device to its disk, so `grub-install`
would embed a core image that cannot find its prefix and `update-grub` could write a grub.cfg
with no kernel at all. Instead: build core.img with the prefix set explicitly, write it with
grub-bios-setup to the whole-disk loop device, and write grub.cfg from the facts we know.
Inside the booted machine grub-probe works again, so update-grub serves later kernel upgrades.
"""

from __future__ import annotations

from ..model.info import BuildInfo
from ..model.phases import Phase
from ..model.task import Task
from .apt import AptInstall
from .boot import InstallKernel, boot_paths, kernel_cmdline
from .system import InstallSystemPackages

GRUB_MODULES = [
    "biosdisk",
    "part_gpt",
    "part_msdos",
    "ext2",
    "xfs",
    "search_fs_uuid",
    "serial",
    "terminal",
    "normal",
    "linux",
    "configfile",
    "echo",
    "test",
    "gzio",
]


class InstallGrubPackages(AptInstall):
    description = "Installing grub"
    predecessors = (InstallSystemPackages,)
    successors = (InstallKernel,)
    # grub-pc-bin, not grub-pc: grub-pc's maintainer scripts would try grub-install on the host's devices.
    packages = ("grub-pc-bin", "grub2-common")


class InstallGrub(Task):
    description = "Installing grub to the disk"
    phase = Phase.SYSTEM_MODIFICATION
    reads = ("provider.console",)

    @classmethod
    def run(cls, info: BuildInfo) -> None:
        assert info.disk is not None
        layout = info.layout
        boot = layout.get("boot") or layout.root
        table = "gpt" if layout.table == "gpt" else "msdos"
        grub_dir = "/grub" if layout.get("boot") else "/boot/grub"
        cmdline = kernel_cmdline(info)
        serial = "console=ttyS0" in cmdline

        defaults = info.target / "etc/default/grub"
        defaults.write_text(
            "GRUB_DEFAULT=0\nGRUB_TIMEOUT=1\nGRUB_DISTRIBUTOR=Debian\n"
            f'GRUB_CMDLINE_LINUX_DEFAULT=""\nGRUB_CMDLINE_LINUX="{cmdline.split(" ", 2)[2]}"\n'
            + (
                'GRUB_TERMINAL="console serial"\nGRUB_SERIAL_COMMAND="serial --unit=0 --speed=115200"\n'
                if serial
                else ""
            )
        )

        info.chroot(["mkdir", "-p", "/boot/grub/i386-pc"])
        info.chroot(
            [
                "sh",
                "-c",
                "cp /usr/lib/grub/i386-pc/*.mod /usr/lib/grub/i386-pc/*.lst "
                "/usr/lib/grub/i386-pc/*.img /boot/grub/i386-pc/",
            ]
        )
        info.chroot(
            [
                "grub-mkimage",
                "-O",
                "i386-pc",
                "-o",
                "/boot/grub/i386-pc/core.img",
                "-p",
                f"(hd0,{table}{boot.number}){grub_dir}",
                *GRUB_MODULES,
            ]
        )
        info.chroot(
            [
                "/usr/lib/grub/i386-pc/grub-bios-setup",
                "--directory=/boot/grub/i386-pc",
                "--skip-fs-probe",
                info.disk.whole_device(),
            ]
        )

        kernel, initrd = boot_paths(info)
        boot_uuid = info.facts["uuids"][boot.name]
        terminal = (
            (
                "serial --unit=0 --speed=115200\nterminal_input console serial\n"
                "terminal_output console serial\n"
            )
            if serial
            else ""
        )
        (info.target / "boot/grub/grub.cfg").write_text(
            "# Written by vzstages at build time; update-grub regenerates it inside the machine.\n"
            f"set default=0\nset timeout=1\n{terminal}"
            f"insmod part_{table}\ninsmod ext2\ninsmod xfs\n"
            f"search --no-floppy --fs-uuid --set=root {boot_uuid}\n"
            "menuentry 'Debian GNU/Linux' {\n"
            f"\tlinux {kernel} {cmdline}\n\tinitrd {initrd}\n}}\n"
        )
