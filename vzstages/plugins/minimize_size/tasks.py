from __future__ import annotations

from pathlib import Path

from ...atomic import atomic_output
from ...common.apt import AptUpdate
from ...common.cleanup import CleanApt
from ...common.image import ConvertImage
from ...model.info import BuildInfo
from ...model.phases import Phase
from ...model.task import Task

DPKG_FILTER = "etc/dpkg/dpkg.cfg.d/10-vzstages-minimize"


class FilterDpkgPaths(Task):
    description = "Keeping documentation and translations out of installed packages"
    phase = Phase.PACKAGE_INSTALLATION
    successors = (AptUpdate,)
    reads = ("plugins.minimize_size.dpkg",)

    @classmethod
    def run(cls, info: BuildInfo) -> None:
        dpkg = info.manifest.get("plugins.minimize_size.dpkg")
        rules = []
        if dpkg.get("exclude_docs"):
            rules += [
                "path-exclude=/usr/share/doc/*",
                "path-include=/usr/share/doc/*/copyright",
                "path-exclude=/usr/share/man/*",
                "path-exclude=/usr/share/info/*",
                "path-exclude=/usr/share/groff/*",
                "path-exclude=/usr/share/linda/*",
                "path-exclude=/usr/share/lintian/*",
            ]
        if "locales" in dpkg:
            rules += ["path-exclude=/usr/share/locale/*", "path-include=/usr/share/locale/locale.alias"]
            rules += [f"path-include=/usr/share/locale/{name}*" for name in dpkg["locales"]]
        (info.target / DPKG_FILTER).write_text("# vzstages minimize_size\n" + "\n".join(rules) + "\n")
        # The filters apply to what dpkg installs from now on; remove what debootstrap put there.
        share = info.target / "usr/share"
        if dpkg.get("exclude_docs"):
            for folder in ("man", "info", "groff", "linda", "lintian"):
                (share / folder).rmtree()
            for doc in (share / "doc").glob("*"):
                for entry in doc.iterdir() if doc.is_dir() and not doc.is_symlink() else []:
                    if entry.name != "copyright":
                        entry.rmtree()
        if "locales" in dpkg:
            keep = tuple(dpkg["locales"])
            for entry in (share / "locale").glob("*"):
                if entry.is_dir() and not entry.is_symlink() and not entry.name.startswith(keep):
                    entry.rmtree()


class ConfigureAptForSmallImages(Task):
    description = "Configuring apt to keep little on disk"
    phase = Phase.SYSTEM_CLEANING
    # In cleanup, after the build's last apt run: the autoclean hook deletes .deb files, and
    # during the build the archive folder is the host's shared package cache.
    predecessors = (CleanApt,)
    reads = ("plugins.minimize_size.apt",)

    @classmethod
    def run(cls, info: BuildInfo) -> None:
        apt = info.manifest.get("plugins.minimize_size.apt")
        conf = info.target / "etc/apt/apt.conf.d"
        if apt.get("autoclean"):
            (conf / "90-vzstages-autoclean").write_text(
                'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb '
                '/var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };\n'
                'APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb '
                '/var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };\n'
                'Dir::Cache::pkgcache "";\nDir::Cache::srcpkgcache "";\n'
            )
        if "languages" in apt:
            languages = "; ".join(f'"{lang}"' for lang in apt["languages"])
            (conf / "20-vzstages-languages").write_text(f"Acquire::Languages {{ {languages}; }};\n")
        if apt.get("gzip_indexes"):
            (conf / "20-vzstages-gzip-indexes").write_text(
                'Acquire::GzipIndexes "true";\nAcquire::CompressionTypes::Order:: "gz";\n'
            )
        if apt.get("autoremove_suggests"):
            (conf / "20-vzstages-autoremove-suggests").write_text(
                'Apt::AutoRemove::SuggestsImportant "false";\n'
            )


class ShrinkImage(Task):
    description = "Compressing the image"
    phase = Phase.IMAGE_REGISTRATION
    predecessors = (ConvertImage,)
    reads = ("plugins.minimize_size.shrink",)

    @classmethod
    def run(cls, info: BuildInfo) -> None:
        output = Path(info.facts["image"])
        options = {
            ".qcow2": ["-O", "qcow2", "-c"],
            ".vmdk": ["-O", "vmdk", "-o", "subformat=streamOptimized"],
        }.get(output.suffix)
        if options is None:
            return  # raw, vdi and vhd have no compressed form that hypervisors read
        with atomic_output(output) as tmp:
            info.host.run(["qemu-img", "convert", *options, str(output), str(tmp)])
        info.say(f"compressed {output.name}: {output.stat().st_blocks * 512 / 2**20:.0f} MiB")
