"""grub for BIOS and UEFI, installed by hand.

grub-probe cannot relate a filesystem on an offset loop device to its disk, so `grub-install`
would embed a core image that cannot find its prefix and `update-grub` could write a grub.cfg
with no kernel at all. Instead: build core.img with the prefix set explicitly, write it with
grub-bios-setup to the whole-disk loop device, and write grub.cfg from the facts we know.
Inside the booted machine grub-probe works again, so update-grub serves later kernel upgrades.
UEFI works the same way: a grub EFI binary with its configuration built in, on the removable-media
path of the EFI system partition.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..model.info import BuildInfo
from ..model.phases import Phase
from ..model.task import Task
from ..model.view import ManifestView
from .apt import AptInstall
from .bootable import InstallKernel, boot_paths, kernel_cmdline
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


# grub's platform directory and the removable-media path UEFI firmware boots without NVRAM entries
# (an EBS snapshot, a copied disk image carry none).
EFI_TARGETS = {"amd64": ("x86_64-efi", "BOOTX64.EFI"), "arm64": ("arm64-efi", "BOOTAA64.EFI")}
EFI_MODULES = [
    "part_gpt",
    "part_msdos",
    "fat",
    "ext2",
    "xfs",
    "search",  # the early config runs before $prefix is known: nothing can be autoloaded
    "search_fs_uuid",
    "normal",
    "linux",
    "configfile",
    "echo",
    "test",
    "gzio",
    "efi_gop",
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
    reads = ("provider.console", "system.architecture")  # kernel_cmdline

    @classmethod
    def run(cls, info: BuildInfo) -> None:
        assert info.disk is not None
        serial = "console=ttyS0" in kernel_cmdline(info)
        write_grub_defaults(info, serial)

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
                f"({boot_device(info)}){grub_directory(info)}",
                *GRUB_MODULES,
                *lvm_modules(info),
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
        write_grub_cfg(info, serial)


class InstallGrubEfiPackages(AptInstall):
    description = "Installing grub for UEFI"
    predecessors = (InstallSystemPackages,)
    successors = (InstallKernel,)
    reads = ("system.architecture",)

    @classmethod
    def packages_for(cls, manifest: ManifestView) -> Sequence[str]:
        # The -bin package only: grub-efi-*'s maintainer scripts would run grub-install against
        # the build host's firmware. dosfstools lets the machine fsck its EFI system partition.
        return [f"grub-efi-{manifest.get('system.architecture')}-bin", "grub2-common", "dosfstools"]


class InstallGrubEfi(Task):
    description = "Installing grub to the EFI system partition"
    phase = Phase.SYSTEM_MODIFICATION
    reads = ("provider.console", "system.architecture")  # kernel_cmdline
    host_packages = ("mtools",)

    @classmethod
    def run(cls, info: BuildInfo) -> None:
        assert info.disk is not None
        esp = info.layout.get("efi")
        assert esp is not None  # a uefi layout always has one
        platform, loader = EFI_TARGETS[info.manifest.get("system.architecture")]
        # The firmware console already reaches the serial port on EC2 and QEMU: grub needs no
        # serial terminal of its own.
        write_grub_defaults(info, serial=False)
        info.chroot(["mkdir", "-p", f"/boot/grub/{platform}", "/boot/efi"])
        info.chroot(
            [
                "sh",
                "-c",
                f"cp /usr/lib/grub/{platform}/*.mod /usr/lib/grub/{platform}/*.lst /boot/grub/{platform}/",
            ]
        )
        # The boot filesystem is found by its UUID, not by a disk number: under UEFI the root
        # volume need not be the firmware's first disk.
        (info.target / "boot/grub/early.cfg").write_text(
            f"search --no-floppy --fs-uuid --set=root {info.facts['uuids'][info.layout.boot.name]}\n"
            f"set prefix=($root){grub_directory(info)}\n"
        )
        binary = f"boot/grub/{platform}/core.efi"
        info.chroot(
            [
                "grub-mkimage",
                "-O",
                platform,
                "-o",
                f"/{binary}",
                "-c",
                "/boot/grub/early.cfg",
                "-p",
                grub_directory(info),
                *EFI_MODULES,
                *lvm_modules(info),
            ]
        )
        # The EFI system partition is not mounted during the build (see Layout.build_mounts).
        # mtools dates what it writes by the clock unless given the stage's epoch.
        device, dated = info.disk.partition_device(esp), {"SOURCE_DATE_EPOCH": str(info.epoch)}
        info.host.run(["mmd", "-i", device, "::EFI", "::EFI/BOOT"], env=dated)
        built = (info.target / binary).host_path()
        info.host.run(["mcopy", "-i", device, str(built), f"::EFI/BOOT/{loader}"], env=dated)
        write_grub_cfg(info, serial=False)


def boot_device(info: BuildInfo) -> str:
    """The boot filesystem's device as grub names it: a partition of the first disk, or the
    logical volume when /boot is on LVM."""
    layout = info.layout
    if layout.boot.logical and layout.lvm is not None:
        return "lvm/" + layout.lvm.device.removeprefix("/dev/mapper/")
    return f"hd0,{'gpt' if layout.table == 'gpt' else 'msdos'}{layout.boot.number}"


def lvm_modules(info: BuildInfo) -> list[str]:
    return ["lvm"] if info.layout.lvm is not None else []


def grub_directory(info: BuildInfo) -> str:
    """/boot/grub as grub sees it on the boot filesystem."""
    return f"{info.layout.boot_dir}/grub"


def write_grub_defaults(info: BuildInfo, serial: bool) -> None:
    """/etc/default/grub, so that update-grub inside the machine keeps the same command line."""
    cmdline = kernel_cmdline(info)
    (info.target / "etc/default/grub").write_text(
        "GRUB_DEFAULT=0\nGRUB_TIMEOUT=1\nGRUB_DISTRIBUTOR=Debian\n"
        f'GRUB_CMDLINE_LINUX_DEFAULT=""\nGRUB_CMDLINE_LINUX="{cmdline.split(" ", 2)[2]}"\n'
        + (
            'GRUB_TERMINAL="console serial"\nGRUB_SERIAL_COMMAND="serial --unit=0 --speed=115200"\n'
            if serial
            else ""
        )
    )


def write_grub_cfg(info: BuildInfo, serial: bool) -> None:
    """grub.cfg from the facts we know (update-grub cannot probe the build's loop devices)."""
    layout = info.layout
    table = "gpt" if layout.table == "gpt" else "msdos"
    kernel, initrd = boot_paths(info)
    terminal = (
        "serial --unit=0 --speed=115200\nterminal_input console serial\nterminal_output console serial\n"
        if serial
        else ""
    )
    (info.target / "boot/grub/grub.cfg").write_text(
        "# Written by vzstages at build time; update-grub regenerates it inside the machine.\n"
        f"set default=0\nset timeout=1\n{terminal}"
        f"insmod part_{table}\n{'insmod lvm' + chr(10) if layout.lvm else ''}insmod ext2\ninsmod xfs\n"
        f"search --no-floppy --fs-uuid --set=root {info.facts['uuids'][layout.boot.name]}\n"
        "menuentry 'Debian GNU/Linux' {\n"
        f"\tlinux {kernel} {kernel_cmdline(info)}\n\tinitrd {initrd}\n}}\n"
    )
