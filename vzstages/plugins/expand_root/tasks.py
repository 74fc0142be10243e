from __future__ import annotations

from collections.abc import Sequence

from ...common.apt import AptInstall
from ...model.info import BuildInfo
from ...model.phases import Phase
from ...model.task import Task
from ...model.view import ManifestView


class InstallGrowpart(AptInstall):
    description = "Installing growpart"
    reads = ("volume.partitions.root.filesystem",)

    @classmethod
    def packages_for(cls, manifest: ManifestView) -> Sequence[str]:
        xfs = manifest.get("volume.partitions.root.filesystem") == "xfs"
        return ["cloud-guest-utils", "fdisk", *(["xfsprogs"] if xfs else [])]


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
