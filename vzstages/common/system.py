"""The system stage's generic settings: locale, timezone, hostname, network, fstab."""

from __future__ import annotations

from ..model.info import BuildInfo
from ..model.phases import Phase
from ..model.task import Task
from ..model.view import ManifestView
from .apt import AptInstall


def locale_of(manifest: ManifestView) -> tuple[str, str]:
    """(name, charmap) of the manifest's locale: ("en_US.UTF-8", "UTF-8") by default."""
    charmap = manifest.get("system.charmap", "UTF-8")
    return f"{manifest.get('system.locale', 'en_US')}.{charmap}", charmap


class InstallSystemPackages(AptInstall):
    """The locale is generated here, with the package, not in the system stage: locale-gen is
    most of what a late change (a hostname) would otherwise rebuild."""

    description = "Installing locales and tzdata, generating the locale"
    packages = ("locales", "tzdata")
    reads = ("system.locale", "system.charmap")

    @classmethod
    def after_install(cls, info: BuildInfo) -> None:
        name, charmap = locale_of(info.manifest)
        (info.target / "etc/locale.gen").write_text(f"{name} {charmap}\n")
        info.chroot(["locale-gen"])


class SetLocale(Task):
    description = "Setting the locale"
    phase = Phase.SYSTEM_MODIFICATION
    reads = ("system.locale", "system.charmap")

    @classmethod
    def run(cls, info: BuildInfo) -> None:
        name, _ = locale_of(info.manifest)
        info.chroot(["update-locale", f"LANG={name}"])


class SetTimezone(Task):
    description = "Setting the timezone"
    phase = Phase.SYSTEM_MODIFICATION
    reads = ("system.timezone",)

    @classmethod
    def run(cls, info: BuildInfo) -> None:
        zone = info.manifest.get("system.timezone", "UTC")
        if not (info.target / "usr/share/zoneinfo" / zone).exists():
            raise ValueError(f"system.timezone: no such zone {zone!r} in the image's tzdata")
        localtime = info.target / "etc/localtime"
        localtime.unlink(missing_ok=True)
        localtime.symlink_to(f"/usr/share/zoneinfo/{zone}")
        (info.target / "etc/timezone").write_text(zone + "\n")


class SetHostname(Task):
    description = "Setting the hostname"
    phase = Phase.SYSTEM_MODIFICATION
    reads = ("system.hostname",)

    @classmethod
    def run(cls, info: BuildInfo) -> None:
        hostname = info.manifest.get("system.hostname", "debian")
        short = hostname.split(".")[0]
        (info.target / "etc/hostname").write_text(hostname + "\n")
        names = f"{hostname} {short}" if short != hostname else hostname
        (info.target / "etc/hosts").write_text(
            f"127.0.0.1\tlocalhost\n127.0.1.1\t{names}\n\n"
            "::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"
        )


class ConfigureNetwork(Task):
    description = "Configuring DHCP on the first network interface"
    phase = Phase.SYSTEM_MODIFICATION

    @classmethod
    def run(cls, info: BuildInfo) -> None:
        # The kernel command line sets net.ifnames=0 (see the bootloader tasks), so the first
        # interface is eth0 whatever the hypervisor's bus layout.
        (info.target / "etc/network/interfaces").write_text(
            "source /etc/network/interfaces.d/*\n\nauto lo\niface lo inet loopback\n"
        )
        (info.target / "etc/network/interfaces.d").mkdir(exist_ok=True)
        (info.target / "etc/network/interfaces.d/eth0").write_text(
            "allow-hotplug eth0\niface eth0 inet dhcp\n"
        )


class WriteFstab(Task):
    description = "Writing /etc/fstab by UUID"
    phase = Phase.SYSTEM_MODIFICATION

    @classmethod
    def run(cls, info: BuildInfo) -> None:
        uuids = info.facts["uuids"]
        lines = ["# <device> <mount point> <type> <options> <dump> <pass>"]
        for part in info.layout.mounted():
            options = ",".join(part.mountopts) or "defaults"
            passno = 1 if part.name == "root" else 2
            if part.filesystem == "xfs":
                passno = 0
            lines.append(
                f"UUID={uuids[part.name]}\t{part.mountpoint}\t{part.filesystem}\t{options}\t0\t{passno}"
            )
        swap = info.layout.get("swap")
        if swap:
            lines.append(f"UUID={uuids['swap']}\tnone\tswap\tsw\t0\t0")
        (info.target / "etc/fstab").write_text("\n".join(lines) + "\n")
