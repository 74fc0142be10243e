from __future__ import annotations

from pathlib import Path

from ...common.apt import AptInstall
from ...common.files import CopyFiles
from ...errors import CommandError
from ...model.info import BuildInfo
from ...model.phases import Phase
from ...model.task import Task
from ...model.view import ManifestView

STAGING = "tmp/vzstages-puppet"


class InstallPuppet(AptInstall):
    description = "Installing the puppet agent"
    packages = ("puppet-agent",)


class ApplyPuppet(Task):
    description = "Applying the puppet manifest"
    phase = Phase.USER_MODIFICATION
    predecessors = (CopyFiles,)
    reads = ("plugins.puppet",)

    @classmethod
    def input_files(cls, manifest: ManifestView) -> dict[str, Path]:
        settings = manifest.get("plugins.puppet")
        tarballs = [m for m in settings.get("install_modules", []) if isinstance(m, str)]
        names = [settings.get("manifest"), settings.get("assets"), *tarballs]
        return {name: manifest.relative_path(name) for name in names if name}

    @classmethod
    def run(cls, info: BuildInfo) -> None:
        settings = info.manifest.get("plugins.puppet")
        if settings.get("assets"):
            info.target.copy_tree_from(info.manifest.relative_path(settings["assets"]).resolve())
        staging = info.target / STAGING
        staging.rmtree()
        staging.mkdir(mode=0o700, parents=True)
        try:
            for index, module in enumerate(settings.get("install_modules", [])):
                if isinstance(module, str):
                    (staging / f"module-{index}.tar.gz").copy_from(info.manifest.relative_path(module))
                    source = ["--ignore-dependencies", f"/{STAGING}/module-{index}.tar.gz"]
                else:  # [name, version] from the Forge, with the dependencies it names
                    source = [module[0], *(["--version", module[1]] if len(module) > 1 else [])]
                    if settings.get("forge"):
                        source += ["--module_repository", settings["forge"]]
                info.chroot(["puppet", "module", "install", *source])
            if settings.get("manifest"):
                (staging / "site.pp").copy_from(info.manifest.relative_path(settings["manifest"]))
                # --detailed-exitcodes: 2 means "changes made", 4 and 6 mean failures.
                apply = ["puppet", "apply", "--detailed-exitcodes", f"/{STAGING}/site.pp"]
                result = info.chroot_result(apply, check=False)
                if result.returncode not in (0, 2):
                    raise CommandError(result.argv, result.returncode, result.output)
        finally:
            staging.rmtree()
        state = "enable" if settings.get("enable_agent") else "disable"
        info.chroot(["systemctl", state, "puppet.service"])
