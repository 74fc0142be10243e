"""What a bootable image needs beyond the base system: kernel, initramfs, console, ssh, fstab."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from ..manifest.releases import lookup
from ..model.info import BuildInfo
from ..model.phases import Phase
from ..model.task import Task
from ..model.view import ManifestView
from .apt import APT_SUITES, AptInstall, apt_install
from .system import InstallSystemPackages

SSH_KEYGEN_UNIT = """\
[Unit]
Description=Generate SSH host keys on first boot (vzstages)
ConditionPathExistsGlob=!/etc/ssh/ssh_host_*_key
Before=ssh.service
After=local-fs.target

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A
RemainAfterExit=yes

[Install]
WantedBy=multi-user.target
"""


class InstallBootPackages(AptInstall):
    description = "Installing init, udev and network support"
    predecessors = (InstallSystemPackages,)
    reads = ("system.release",)

    @classmethod
    def packages_for(cls, manifest: ManifestView) -> Sequence[str]:
        release = lookup(manifest.get("system.release"))
        # ifupdown's DHCP client: isc-dhcp-client up to bookworm, dhcpcd from trixie on.
        old = release is not None and release.version is not None and release.version <= 12
        dhcp = "isc-dhcp-client" if old else "dhcpcd-base"
        return ["systemd-sysv", "udev", "kmod", "iproute2", "ifupdown", dhcp]


class InstallInitramfsTools(AptInstall):
    description = "Installing initramfs-tools"
    predecessors = (InstallSystemPackages,)
    # Before the kernel, not with it: set up in the same run as the kernel, initramfs-tools
    # activates its own trigger and the initramfs is built twice. zstd: initramfs-tools compresses
    # with it, and without it falls back to gzip, which takes seconds where zstd takes a moment
    # (minutes under emulation).
    packages = ("initramfs-tools", "zstd")


class InstallLvm(AptInstall):
    description = "Installing LVM (the initramfs activates the root volume group)"
    packages = ("lvm2",)


class WriteInitramfsModules(Task):
    """Providers subclass this with their module list, before the kernel builds the initramfs.

    The initramfs holds those drivers and the root filesystem's (MODULES=list), not every
    storage and network driver of the kernel (Debian's MODULES=most): it builds in 3 s instead of
    25 (minutes under emulation), is a fifth of the size, and boots faster. The drivers a
    provider lists are those its machines' disks need, and virtio's, so that the build's own
    boot test (and KVM) can start the image."""

    description = "Listing the provider's drivers for the initramfs"
    phase = Phase.PACKAGE_INSTALLATION
    predecessors = (InstallSystemPackages,)

    @classmethod
    def modules(cls, info: BuildInfo) -> Sequence[str]:
        return ()

    @classmethod
    def run(cls, info: BuildInfo) -> None:
        filesystems = {p.filesystem for p in info.layout.mounted() if p.filesystem in FILESYSTEM_MODULES}
        modules = list(
            dict.fromkeys([*cls.modules(info), *sorted(FILESYSTEM_MODULES[f] for f in filesystems)])
        )
        target = info.target / "etc/initramfs-tools/modules"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(
            "# Drivers the provider's disks and network need early (vzstages)\n"
            + "".join(f"{m}\n" for m in modules)
        )
        conf = info.target / "etc/initramfs-tools/conf.d/vzstages-modules"
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text(
            "# Only the modules listed in /etc/initramfs-tools/modules (vzstages)\nMODULES=list\n"
        )
        info.facts["initramfs_modules"] = modules


class AddInitramfsModules(Task):
    """Plugins subclass this with drivers their own devices need before udev runs: a datasource
    on a CD-ROM is looked for by cloud-init's early stages, before udev has loaded its driver."""

    description = "Adding a plugin's drivers to the initramfs"
    phase = Phase.PACKAGE_INSTALLATION
    predecessors = (WriteInitramfsModules,)
    modules: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def run(cls, info: BuildInfo) -> None:
        target = info.target / "etc/initramfs-tools/modules"
        listed = target.read_text().splitlines() if target.is_file() else []
        added = [m for m in cls.modules if m not in listed]
        target.write_text("".join(f"{m}\n" for m in [*listed, *added]))
        info.facts["initramfs_modules"] = [*info.facts.get("initramfs_modules", []), *added]


# The kernel module that mounts each filesystem a root or /boot may have.
FILESYSTEM_MODULES = {"ext2": "ext4", "ext3": "ext4", "ext4": "ext4", "xfs": "xfs"}
# virtio block devices over PCI: what QEMU/KVM gives a disk, here and in the build's boot test.
VIRTIO_DISKS = ("virtio_pci", "virtio_blk", "virtio_scsi", "sd_mod")


class InstallKernel(Task):
    description = "Installing the kernel"
    phase = Phase.PACKAGE_INSTALLATION
    predecessors = (InstallBootPackages, InstallInitramfsTools, WriteInitramfsModules, AddInitramfsModules)
    reads = ("system.architecture",)
    archive_suites = APT_SUITES
    # Providers with a leaner kernel for their platform (cloud) override this.
    packages: ClassVar[dict[str, str]] = {
        "amd64": "linux-image-amd64",
        "arm64": "linux-image-arm64",
        "i386": "linux-image-686-pae",
    }

    @classmethod
    def run(cls, info: BuildInfo) -> None:
        apt_install(info, [cls.packages[info.manifest.get("system.architecture")]])
        versions = sorted(p.name.removeprefix("vmlinuz-") for p in (info.target / "boot").glob("vmlinuz-*"))
        if not versions:
            raise RuntimeError("the kernel package installed no /boot/vmlinuz-*")
        info.facts["kernel_version"] = versions[-1]
        info.say(f"kernel {versions[-1]}")


class InstallSshServer(AptInstall):
    description = "Installing the SSH server"
    predecessors = (InstallSystemPackages,)
    packages = ("openssh-server",)


class RegenerateSshHostKeys(Task):
    description = "Generating SSH host keys on first boot, not in the image"
    phase = Phase.SYSTEM_MODIFICATION

    @classmethod
    def run(cls, info: BuildInfo) -> None:
        unit = info.target / "etc/systemd/system/vzstages-ssh-keygen.service"
        unit.write_text(SSH_KEYGEN_UNIT)
        info.chroot(["systemctl", "enable", "vzstages-ssh-keygen.service"])


def kernel_cmdline(info: BuildInfo) -> str:
    """Root by UUID, classic interface names (eth0), and the consoles the manifest asks for."""
    # Root on LVM by its device-mapper name: that is what makes the initramfs activate the VG.
    lvm = info.layout.lvm
    root = lvm.device if lvm is not None else f"UUID={info.facts['uuids']['root']}"
    serial = info.manifest.get("provider.console", "serial") == "serial"
    if serial and info.manifest.get("system.architecture") == "arm64":
        # EC2's Graviton has a 16550 UART (ttyS0), QEMU's virt machine and other arm64 clouds a
        # PL011 (ttyAMA0): name both, the kernel skips the one that is absent. No tty0: these
        # machines have no display, and while the preferred (last) console is absent, /dev/console
        # (systemd's status, expand_root's report) would go to the first one registered.
        consoles = ["console=ttyAMA0,115200n8", "console=ttyS0,115200n8"]
    elif serial:
        consoles = ["console=tty0", "console=ttyS0,115200n8"]
    else:
        consoles = ["console=tty0"]
    # A provider's own arguments (Azure's earlyprintk) come as a fact from its packages stage.
    extra = [str(a) for a in info.facts.get("kernel_args", [])]
    return f"root={root} ro net.ifnames=0 biosdevname=0 {' '.join([*consoles, *extra])}"


def boot_paths(info: BuildInfo) -> tuple[str, str]:
    """The kernel and initrd paths as the bootloader sees them (relative to the boot filesystem)."""
    version = info.facts["kernel_version"]
    prefix = info.layout.boot_dir
    return f"{prefix}/vmlinuz-{version}", f"{prefix}/initrd.img-{version}"
