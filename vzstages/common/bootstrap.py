"""The os stage: the base system (mmdebstrap), and the settings that keep the build fast and the
chroot quiet."""

from __future__ import annotations

import hashlib
import platform
import shutil
from pathlib import Path

from ..errors import VzError
from ..host import package_versions
from ..model.info import BuildInfo
from ..model.phases import Phase
from ..model.task import Task
from ..model.view import ManifestView
from . import archive
from .base_trees import BaseTrees, tree_key
from .package_cache import package_cache_lock

DEBIAN_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "i686": "i386"}
QEMU_ARCH = {"amd64": "x86_64", "arm64": "aarch64", "i386": "i386"}
BINFMT = Path("/proc/sys/fs/binfmt_misc")


def host_architecture() -> str:
    return DEBIAN_ARCH.get(platform.machine(), platform.machine())


def foreign_architecture_problem(arch: str, binfmt: Path = BINFMT) -> str | None:
    """Why this host cannot run `arch` binaries in a chroot, or None if it can: natively, or
    through qemu-user registered with binfmt_misc. The F flag matters: the kernel then holds the
    emulator open, so it works inside the chroot without a copy of it there."""
    host = host_architecture()
    if arch == host or (host == "amd64" and arch == "i386"):
        return None
    qemu = QEMU_ARCH.get(arch, arch)
    entry = binfmt / f"qemu-{qemu}"
    fix = "apt-get install qemu-user-static binfmt-support"
    if not entry.exists():
        return (
            f"system.architecture {arch} on this {host} host runs the image's programs through "
            f"qemu-user, and no qemu-{qemu} handler is registered with "
            f"binfmt_misc ({fix}; in a container, the host must register it)"
        )
    fields = entry.read_text().split("\n")
    flags = next((f.split(":", 1)[1].strip() for f in fields if f.startswith("flags:")), "")
    if fields[0].strip() != "enabled" or "F" not in flags:
        return (
            f"the binfmt_misc handler {entry} is disabled or lacks the F flag, so {arch} programs "
            f"cannot run inside the build chroot ({fix}, then update-binfmts --enable)"
        )
    if shutil.which("arch-test") is None:
        return f"mmdebstrap checks that {arch} programs run here with arch-test (apt-get install arch-test)"
    return None


# Written after debootstrap, removed by the cleanup stage: services must not start in the chroot,
# and dpkg need not fsync every file of a throw-away build.
POLICY_RC_D = "usr/sbin/policy-rc.d"
DPKG_UNSAFE_IO = "etc/dpkg/dpkg.cfg.d/vzstages-unsafe-io"


# bootstrap-vz's variants (debootstrap's) as mmdebstrap names them: no variant meant
# debootstrap's default (required and important packages); fakechroot was a way not to need root,
# which a build here has.
VARIANTS = {
    None: "debootstrap",
    "standard": "debootstrap",
    "minbase": "minbase",
    "buildd": "buildd",
    "fakechroot": "minbase",
}
MMDEBSTRAP_HOOKS = Path("/usr/share/mmdebstrap/hooks")


class Bootstrap(Task):
    """The base system, with mmdebstrap: apt resolves and fetches it (through the shared package
    cache), dpkg installs it in one run, under eatmydata (mmdebstrap's own hook, removed before
    it finishes). The checkpoint is a plain minbase (or the variant asked for)."""

    description = "Installing the base system with mmdebstrap"
    host_packages = ("mmdebstrap",)
    phase = Phase.OS_INSTALLATION
    reads = (
        "system.release",
        "system.architecture",
        "bootstrapper.mirror",
        "packages.mirror",
        "bootstrapper.variant",
        "bootstrapper.include_packages",
        "bootstrapper.keyring",
    )
    archive_suites = ("",)  # the base system comes from the release only

    @classmethod
    def input_files(cls, manifest: ManifestView) -> dict[str, Path]:
        keyring = manifest.get("bootstrapper.keyring")
        return {keyring: manifest.relative_path(keyring)} if keyring else {}

    @classmethod
    def preflight(cls, manifest: ManifestView) -> None:
        problem = foreign_architecture_problem(manifest.get("system.architecture"))
        if problem:
            raise VzError(problem)

    @classmethod
    def run(cls, info: BuildInfo) -> None:
        m = info.manifest
        release, arch = m.get("system.release"), m.get("system.architecture")
        mirror = archive.choose_mirror(m.get("bootstrapper.mirror") or m.get("packages.mirror"))
        state = archive.fetch_release(mirror, release)  # a clear error for a release the mirror lacks
        # The key's state is taken from apt's mirror (packages.mirror first): comparable only when
        # mmdebstrap uses that same mirror.
        if mirror == archive.choose_mirror(m.get("packages.mirror") or m.get("bootstrapper.mirror")):
            archive.check_state(release, state, info.archive.get(release, ""))
            info.adopt_release_date(release, state, archive.release_date(state))
        info.facts["architecture"] = arch
        trees = BaseTrees(info.package_cache / "base-trees", info.host)
        key = tree_key(cls._tree_facts(info, mirror, state))
        mounts = [p.mountpoint or "/" for p in info.layout.build_mounts()]
        with package_cache_lock(info) as cache:
            if trees.restore(key, info.image_root):
                info.say(f"unpacked the base system this host built before ({key[:12]})")
            else:
                info.say(f"mmdebstrap {release} {arch} from {mirror}")
                argv = [*cls._mmdebstrap(info, cache), release, str(info.image_root), mirror]
                info.host.run(argv, env={"SOURCE_DATE_EPOCH": str(info.epoch)})
                # The build host's resolver and name must not stay in the image.
                for leaked in ("etc/resolv.conf", "etc/hostname"):
                    (info.target / leaked).unlink(missing_ok=True)
                if cls._archive_unmoved(mirror, release, state):
                    trees.save(key, info.image_root, mounts)
        info.facts["release"] = release

    @classmethod
    def _tree_facts(cls, info: BuildInfo, mirror: str, state: bytes) -> dict[str, object]:
        """Everything that shapes what mmdebstrap leaves (base_trees.py)."""
        m = info.manifest
        keyring = m.get("bootstrapper.keyring")
        return {
            "release": m.get("system.release"),
            "architecture": m.get("system.architecture"),
            "variant": VARIANTS[m.get("bootstrapper.variant")],
            "include": m.get("bootstrapper.include_packages") or [],
            "keyring": hashlib.sha256(m.relative_path(keyring).read_bytes()).hexdigest() if keyring else None,
            "mirror": mirror,
            "archive": hashlib.sha256(state).hexdigest(),
            "mmdebstrap": package_versions(("mmdebstrap",))["mmdebstrap"],
            "epoch": info.epoch,
        }

    @staticmethod
    def _archive_unmoved(mirror: str, release: str, state: bytes) -> bool:
        """Whether the suite is as it was when the key was taken: else the tree is not kept."""
        try:
            return archive.fetch_release(mirror, release) == state
        except VzError:
            return False

    @staticmethod
    def _mmdebstrap(info: BuildInfo, cache: Path) -> list[str]:
        m = info.manifest
        archives = '"$1/var/cache/apt/archives"'
        argv = [
            "mmdebstrap",
            "--mode=root",
            f"--variant={VARIANTS[m.get('bootstrapper.variant')]}",
            f"--architectures={m.get('system.architecture')}",
            "--skip=check/empty",  # the mounted filesystem's empty lost+found is fine
        ]
        if (MMDEBSTRAP_HOOKS / "eatmydata").is_dir():
            argv.append(f"--hook-dir={MMDEBSTRAP_HOOKS / 'eatmydata'}")
        if m.get("bootstrapper.include_packages"):
            argv.append("--include=" + ",".join(m.get("bootstrapper.include_packages")))
        if m.get("bootstrapper.keyring"):
            argv.append(f"--keyring={m.relative_path(m.get('bootstrapper.keyring'))}")
        # Downloads go to the host's shared package cache, bound in for the run only.
        argv.append(f"--setup-hook=mkdir -p {archives} && mount --bind {cache} {archives}")
        return [*argv, f"--customize-hook=umount {archives}"]


class PrepareChroot(Task):
    description = "Keeping services from starting and dpkg from syncing during the build"
    phase = Phase.OS_INSTALLATION
    predecessors = (Bootstrap,)

    @classmethod
    def run(cls, info: BuildInfo) -> None:
        policy = info.target / POLICY_RC_D
        policy.write_text(
            "#!/bin/sh\n# vzstages: no service starts inside the build chroot\nexit 101\n", 0o755
        )
        (info.target / DPKG_UNSAFE_IO).write_text("force-unsafe-io\n")


class SetMountModes(Task):
    description = "Setting the modes of mounted partitions"
    phase = Phase.OS_INSTALLATION
    predecessors = (Bootstrap,)
    reads = ("volume.partitions",)

    @classmethod
    def run(cls, info: BuildInfo) -> None:
        for part in info.layout.build_mounts():
            if part.mode:
                (info.target / (part.mountpoint or "/").lstrip("/")).chmod(int(part.mode, 8))
