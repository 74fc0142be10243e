"""The os stage: debootstrap, and the settings that keep the build fast and the chroot quiet."""

from __future__ import annotations

import platform
from pathlib import Path

from ..errors import VzError
from ..model.info import BuildInfo
from ..model.phases import Phase
from ..model.task import Task
from ..model.view import ManifestView
from . import archive

DEBIAN_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "i686": "i386"}

# Written after debootstrap, removed by the cleanup stage: services must not start in the chroot,
# and dpkg need not fsync every file of a throw-away build.
POLICY_RC_D = "usr/sbin/policy-rc.d"
DPKG_UNSAFE_IO = "etc/dpkg/dpkg.cfg.d/vzstages-unsafe-io"


class Debootstrap(Task):
    description = "Installing the base system with debootstrap"
    phase = Phase.OS_INSTALLATION
    reads = (
        "system.release",
        "system.architecture",
        "bootstrapper.mirror",
        "packages.mirror",
        "bootstrapper.variant",
        "bootstrapper.include_packages",
        "bootstrapper.exclude_packages",
        "bootstrapper.keyring",
    )
    archive_suites = ("",)  # debootstrap reads the release only

    @classmethod
    def input_files(cls, manifest: ManifestView) -> dict[str, Path]:
        keyring = manifest.get("bootstrapper.keyring")
        return {keyring: manifest.relative_path(keyring)} if keyring else {}

    @classmethod
    def run(cls, info: BuildInfo) -> None:
        from .apt import package_cache_lock  # apt builds on this module

        m = info.manifest
        release, arch = m.get("system.release"), m.get("system.architecture")
        host_arch = DEBIAN_ARCH.get(platform.machine(), platform.machine())
        if arch not in (host_arch, "i386" if host_arch == "amd64" else host_arch):
            raise VzError(
                f"system.architecture {arch} cannot be built on this {host_arch} host "
                "(cross-architecture builds are not supported)"
            )
        mirror = archive.choose_mirror(m.get("bootstrapper.mirror") or m.get("packages.mirror"))
        archive.fetch_release(mirror, release)  # a clear error for a release the mirror lacks
        info.facts["architecture"] = arch
        argv = ["debootstrap", f"--arch={arch}"]
        variant = m.get("bootstrapper.variant")
        if variant and variant != "standard":
            argv.append(f"--variant={variant}")
        if m.get("bootstrapper.include_packages"):
            argv.append("--include=" + ",".join(m.get("bootstrapper.include_packages")))
        if m.get("bootstrapper.exclude_packages"):
            argv.append("--exclude=" + ",".join(m.get("bootstrapper.exclude_packages")))
        if m.get("bootstrapper.keyring"):
            argv.append(f"--keyring={m.relative_path(m.get('bootstrapper.keyring'))}")
        info.say(f"debootstrap {release} {arch} from {mirror}")
        with package_cache_lock(info) as cache:
            info.host.run([*argv, f"--cache-dir={cache}", release, str(info.target), mirror])
        # debootstrap copies the build host's resolver and name; the image must not carry them.
        for leaked in ("etc/resolv.conf", "etc/hostname"):
            (info.target / leaked).unlink(missing_ok=True)
        info.facts["release"] = release


class PrepareChroot(Task):
    description = "Keeping services from starting and dpkg from syncing during the build"
    phase = Phase.OS_INSTALLATION
    predecessors = (Debootstrap,)

    @classmethod
    def run(cls, info: BuildInfo) -> None:
        policy = info.target / POLICY_RC_D
        policy.write_text("#!/bin/sh\n# vzstages: no service starts inside the build chroot\nexit 101\n")
        policy.chmod(0o755)
        (info.target / DPKG_UNSAFE_IO).write_text("force-unsafe-io\n")


class SetMountModes(Task):
    description = "Setting the modes of mounted partitions"
    phase = Phase.OS_INSTALLATION
    predecessors = (Debootstrap,)
    reads = ("volume.partitions",)

    @classmethod
    def run(cls, info: BuildInfo) -> None:
        for part in info.layout.mounted():
            if part.mode:
                (info.target / (part.mountpoint or "/").lstrip("/")).chmod(int(part.mode, 8))
