from __future__ import annotations

from ...common.apt import APT_SUITES, InstallPackages, apt_install
from ...model.info import BuildInfo
from ...model.phases import Phase
from ...model.task import Task


class InstallGrowpart(Task):
    description = "Installing growpart"
    phase = Phase.PACKAGE_INSTALLATION
    predecessors = (InstallPackages,)
    reads = ("volume.partitions.root.filesystem",)
    archive_suites = APT_SUITES

    @classmethod
    def run(cls, info: BuildInfo) -> None:
        packages = ["cloud-guest-utils", "fdisk"]
        if info.manifest.get("volume.partitions.root.filesystem") == "xfs":
            packages.append("xfsprogs")
        apt_install(info, packages)


class InstallExpandRoot(Task):
    description = "Installing the grow-root-at-boot unit"
    phase = Phase.SYSTEM_MODIFICATION
    reads = ("plugins.expand_root",)
    assets = ("assets/vzstages-expand-root", "assets/vzstages-expand-root.service")

    @classmethod
    def run(cls, info: BuildInfo) -> None:
        script = info.target / "usr/local/sbin/vzstages-expand-root"
        script.parent.mkdir(parents=True, exist_ok=True)
        script.copy_from(cls.asset_path("assets/vzstages-expand-root"), 0o755)
        (info.target / "etc/systemd/system/vzstages-expand-root.service").copy_from(
            cls.asset_path("assets/vzstages-expand-root.service"), 0o644
        )
        settings = info.manifest.get("plugins.expand_root") or {}
        names = {
            "root_device": "ROOT_DEVICE",
            "root_partition": "ROOT_PARTITION",
            "filesystem_type": "FILESYSTEM_TYPE",
        }
        lines = [f"{names[k]}={v}" for k, v in sorted(settings.items())]
        defaults = info.target / "etc/default/vzstages-expand-root"
        if lines:
            defaults.write_text("# from the manifest's plugins.expand_root\n" + "\n".join(lines) + "\n")
        else:
            defaults.unlink(missing_ok=True)
        info.chroot(["systemctl", "enable", "vzstages-expand-root.service"])
