"""apt inside the image: sources, preferences, update, install. One way to install packages."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import ClassVar

from ..model.info import BuildInfo
from ..model.phases import Phase
from ..model.task import Task
from ..model.view import ManifestView
from ..runid import run_id
from ..volume.disk import mount_point, unmount
from . import archive
from .package_cache import package_cache_lock

APT_SUITES = ("", "-updates", "-security")

APT_OPTIONS = [
    "-o",
    "Dpkg::Options::=--force-confdef",
    "-o",
    "Dpkg::Options::=--force-confold",
    "-o",
    "APT::Install-Recommends=false",
    "-o",
    "DPkg::Lock::Timeout=600",
]


BUILD_APT_DIR = "run/vzstages-apt"


@contextlib.contextmanager
def shared_package_cache(info: BuildInfo) -> Iterator[dict[str, str]]:
    """Bind the host's .deb cache over the image's, so downloads are shared and stay out of the
    image. Yields the environment apt runs with: settings for this build only (a proxy with its
    password, see info.apt_config) come from a host file bound in for the command, so they
    never reach a checkpoint."""
    with package_cache_lock(info) as cache, contextlib.ExitStack() as stack:
        target = mount_point(info.target / "var/cache/apt/archives")
        info.host.run(["mount", "--bind", str(cache), str(target)])
        stack.callback(unmount, info.host, target)
        env: dict[str, str] = {}
        if info.apt_config:
            env = stack.enter_context(_build_apt_config(info))
        yield env


@contextlib.contextmanager
def _build_apt_config(info: BuildInfo) -> Iterator[dict[str, str]]:
    # In this run's folder: 0700, and a dead run's folder is deleted by the next build's reaping.
    folder = info.runs / run_id() / "apt-config"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    conf = folder / "apt.conf"
    fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("".join(f"{line}\n" for line in info.apt_config))
    inside = info.target / BUILD_APT_DIR
    target = mount_point(inside)
    info.host.run(["mount", "--bind", str(folder), str(target)])
    try:
        yield {"APT_CONFIG": f"/{BUILD_APT_DIR}/apt.conf"}
    finally:
        unmount(info.host, target)
        with contextlib.suppress(OSError):
            inside.rmdir()
        shutil.rmtree(folder, ignore_errors=True)


def apt_get(info: BuildInfo, args: Sequence[str]) -> None:
    with shared_package_cache(info) as env:
        info.chroot(["apt-get", "-y", "-q", *APT_OPTIONS, *args], env=env)


def apt_install(info: BuildInfo, packages: Sequence[str]) -> None:
    if packages:
        apt_get(info, ["install", *packages])


DEBIAN_SOURCE_KEYS = (
    "system.release",
    "packages.mirror",
    "bootstrapper.mirror",
    "packages.security",
)


def mirror_of(m: ManifestView) -> str:
    """The mirror apt uses, which is also the one the archive state in a key is taken from."""
    return archive.choose_mirror(m.get("packages.mirror") or m.get("bootstrapper.mirror"))


class WriteAptSources(Task):
    description = "Writing apt sources"
    phase = Phase.PACKAGE_INSTALLATION
    reads = (*DEBIAN_SOURCE_KEYS, "packages.components", "packages.sources", "packages.include-source-type")

    @classmethod
    def run(cls, info: BuildInfo) -> None:
        m = info.manifest
        components = " ".join(m.get("packages.components") or ["main"])
        types = "deb deb-src" if m.get("packages.include-source-type") else "deb"
        suites = archive.debian_suites(m)
        lines = [
            f"{kind} {mirror} {suite} {components}"
            for kind in types.split()
            for suite, mirror in suites.items()
        ]
        (info.target / "etc/apt/sources.list").write_text("\n".join(lines) + "\n")
        for name, entries in (m.get("packages.sources") or {}).items():
            text = "\n".join(m.render(e) for e in entries) + "\n"
            (info.target / f"etc/apt/sources.list.d/{name}.list").write_text(text)


class WriteAptSettings(Task):
    description = "Writing apt preferences, apt.conf.d and trusted keys"
    phase = Phase.PACKAGE_INSTALLATION
    predecessors = (WriteAptSources,)
    reads = ("packages.preferences", "packages.apt.conf.d", "packages.trusted-keys")

    @classmethod
    def input_files(cls, manifest: ManifestView) -> dict[str, Path]:
        return {k: manifest.relative_path(k) for k in manifest.get("packages.trusted-keys") or []}

    @classmethod
    def run(cls, info: BuildInfo) -> None:
        m, etc = info.manifest, info.target / "etc/apt"
        for name, pins in (m.get("packages.preferences") or {}).items():
            stanzas = [
                f"Package: {p['package']}\nPin: {p['pin']}\nPin-Priority: {p['pin-priority']}" for p in pins
            ]
            (etc / "preferences.d").mkdir(exist_ok=True)
            (etc / f"preferences.d/{name}").write_text("\n\n".join(stanzas) + "\n")
        for name, content in (m.get("packages.apt.conf.d") or {}).items():
            (etc / f"apt.conf.d/{name}").write_text(content.rstrip("\n") + "\n")
        for key in m.get("packages.trusted-keys") or []:
            source = m.relative_path(key)
            with open(source, "rb") as f:
                suffix = ".asc" if f.read(4096).lstrip().startswith(b"-----BEGIN") else ".gpg"
            (etc / "trusted.gpg.d").mkdir(exist_ok=True)
            (etc / f"trusted.gpg.d/{source.stem}{suffix}").copy_from(source, 0o644)


class AptUpdate(Task):
    """apt's lists, then the release's updates. The lists must be of the archive's state the
    stage's key names: else the stage stops before installing anything (ArchiveMoved)."""

    description = "Updating the package lists"
    phase = Phase.PACKAGE_INSTALLATION
    predecessors = (WriteAptSettings,)
    archive_suites = APT_SUITES
    reads = DEBIAN_SOURCE_KEYS

    @classmethod
    def run(cls, info: BuildInfo) -> None:
        apt_get(info, ["update"])
        lists = info.target / "var/lib/apt/lists"
        for suite, mirror in archive.debian_suites(info.manifest).items():
            try:
                release_file = (lists / archive.list_name(mirror, suite)).read_bytes()
            except OSError:
                continue  # a mirror without InRelease (Release and Release.gpg): not comparable
            archive.check_state(suite, release_file, info.archive.get(suite, ""))
            info.adopt_release_date(suite, release_file, archive.release_date(release_file))
        apt_get(info, ["dist-upgrade"])


class AptInstall(Task):
    """Installs packages in the packages stage; subclasses name them (`packages`, or
    `packages_for` when they depend on the manifest). Those that follow each other in the stage
    are installed in one apt run: one dependency resolution, one dpkg run, one round of triggers."""

    phase = Phase.PACKAGE_INSTALLATION
    predecessors: ClassVar[Sequence[type[Task]]] = ()
    archive_suites = APT_SUITES
    batch = "apt-install"
    packages: ClassVar[Sequence[str]] = ()

    @classmethod
    def packages_for(cls, manifest: ManifestView) -> Sequence[str]:
        return cls.packages

    @classmethod
    def after_install(cls, info: BuildInfo) -> None:
        """What the task does once its packages are in (after the batch's one apt run)."""

    @classmethod
    def run(cls, info: BuildInfo) -> None:
        apt_install(info, cls.packages_for(info.manifest))
        cls.after_install(info)

    @classmethod
    def run_batch(cls, runs: Sequence[tuple[type[Task], BuildInfo]]) -> None:
        wanted: list[str] = []
        for task, info in runs:
            assert issubclass(task, AptInstall)
            wanted += [p for p in task.packages_for(info.manifest) if p not in wanted]
        apt_install(runs[0][1], wanted)
        for task, info in runs:
            assert issubclass(task, AptInstall)
            task.after_install(info)


class InstallPackages(AptInstall):
    description = "Installing the manifest's packages"
    predecessors = (AptUpdate,)
    successors = (AptInstall,)  # the manifest's own packages first (an edge binds subclasses too)
    reads = ("packages.install",)

    @classmethod
    def packages_for(cls, manifest: ManifestView) -> Sequence[str]:
        # name/target-release goes to apt as is: apt reads "pkg/suite" as "from that suite".
        return [p for p in manifest.get("packages.install") or [] if not p.endswith(".deb")]


class InstallLocalPackages(Task):
    description = "Installing the standard task and the manifest's local .deb files"
    phase = Phase.PACKAGE_INSTALLATION
    predecessors = (InstallPackages,)
    reads = ("packages.install", "packages.install_standard")
    archive_suites = APT_SUITES

    @classmethod
    def input_files(cls, manifest: ManifestView) -> dict[str, Path]:
        return {
            p: manifest.relative_path(p) for p in manifest.get("packages.install") or [] if p.endswith(".deb")
        }

    @classmethod
    def run(cls, info: BuildInfo) -> None:
        m = info.manifest
        if m.get("packages.install_standard"):
            apt_install(info, ["tasksel"])
            with shared_package_cache(info) as env:
                info.chroot(["tasksel", "install", "standard"], env=env)
        debs = [p for p in m.get("packages.install") or [] if p.endswith(".deb")]
        if debs:
            staging = info.target / "tmp/vzstages-debs"
            staging.mkdir(parents=True, exist_ok=True)
            for deb in debs:
                (staging / Path(deb).name).copy_from(m.relative_path(deb))
            apt_install(info, [f"/tmp/vzstages-debs/{Path(d).name}" for d in debs])
            staging.rmtree()
