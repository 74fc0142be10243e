"""System tests: real builds with real tools, as root. On a machine without the prerequisites they
skip with the reason; under CI=true a missing prerequisite fails instead."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from vzstages.common.archive import choose_mirror

from ..conftest import REPO

TOOLS = [
    "mmdebstrap",
    "qemu-img",
    "qemu-storage-daemon",
    "qemu-system-x86_64",
    "sfdisk",
    "losetup",
    "mkfs.ext4",
    "mkfs.ext2",
    "chroot",
]


def missing_prerequisites() -> list[str]:
    missing = []
    if os.geteuid() != 0:
        missing.append("root")
    missing += [f"/dev/{d}" for d in ("loop-control", "fuse") if not Path(f"/dev/{d}").exists()]
    missing += [t for t in TOOLS if shutil.which(t) is None]
    try:
        mirror = choose_mirror(None)
        urllib.request.urlopen(f"{mirror}/dists/bookworm/InRelease", timeout=15).close()
    except Exception as exc:
        missing.append(f"a reachable Debian mirror ({exc})")
    return missing


def unavailable(message: str) -> None:
    """A missing prerequisite: a skip with the reason, but a failure under CI=true."""
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def system_host() -> None:
    missing = missing_prerequisites()
    if missing:
        unavailable("system tests need: " + ", ".join(missing))


@pytest.fixture(scope="session")
def cache(tmp_path_factory, system_host) -> Path:
    """One checkpoint cache for the session: later tests reuse the stages earlier ones built,
    as users' builds do. Downloaded packages may persist between sessions (VZSTAGES_PACKAGE_CACHE)."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def workspace(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("build")


@dataclass
class BackgroundBuild:
    """A build started when the session starts, for a test near its end to check."""

    manifest: Path
    cache: Path
    workspace: Path
    log: Path
    proc: subprocess.Popen[str]

    def wait(self, timeout: float) -> str:
        self.proc.wait(timeout=timeout)
        output = self.log.read_text()
        assert self.proc.returncode == 0, output
        return output


def arm64_missing() -> list[str]:
    """Building arm64 on an amd64 host needs qemu-user in binfmt_misc; booting it needs QEMU's
    arm64 machine and its UEFI firmware."""
    from vzstages.boottest import UEFI_FIRMWARE
    from vzstages.common.bootstrap import foreign_architecture_problem

    missing = [p for p in [foreign_architecture_problem("arm64")] if p]
    missing += [t for t in ["qemu-system-aarch64", "mcopy"] if shutil.which(t) is None]
    return missing + [str(f) for f in UEFI_FIRMWARE["arm64"][:2] if not f.exists()]


# Builds that share no stage with the other tests: started with the session, each with a cache of
# its own (its mounts and daemons are then no other test's leftovers), they run beside the other
# tests. name -> (manifest, edits, extra `vzstages build` arguments, missing prerequisites).
BACKGROUND = {
    # Every program in its chroot runs under qemu-user: about ten minutes.
    "arm64_build": ("manifests/ec2-arm64.yml", {}, ["--no-publish"], arm64_missing),
}


@pytest.fixture(scope="session", autouse=True)
def background_builds(request, tmp_path_factory) -> Iterator[dict[str, BackgroundBuild | str]]:
    """The background builds the collected tests ask for, or why one could not start."""
    wanted = sorted({n for item in request.session.items for n in item.fixturenames if n in BACKGROUND})
    builds: dict[str, BackgroundBuild | str] = {}
    if wanted and not missing_prerequisites():
        for name in wanted:
            manifest, edit, arguments, missing = BACKGROUND[name]
            absent = missing()
            if absent:
                builds[name] = f"{name} needs: " + "; ".join(absent)
            else:
                builds[name] = start_background_build(
                    REPO / manifest, edit, arguments, tmp_path_factory.mktemp(name)
                )
    yield builds
    for build in builds.values():
        if isinstance(build, BackgroundBuild) and build.proc.poll() is None:
            build.proc.terminate()  # the session ended first (a failure, -x): stop it cleanly
            build.proc.wait(timeout=120)


def start_background_build(
    source: Path, edit: dict[str, str], arguments: list[str], folder: Path
) -> BackgroundBuild:
    manifest = with_workspace(source, folder / "build", folder / source.name, edit=edit)
    log = folder / "build.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "vzstages",
                "--cache",
                str(folder / "cache"),
                "build",
                *arguments,
                str(manifest),
            ],
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    return BackgroundBuild(manifest, folder / "cache", folder / "build", log, proc)


def background_build(builds: dict[str, BackgroundBuild | str], name: str) -> BackgroundBuild:
    build = builds.get(name)
    if not isinstance(build, BackgroundBuild):
        unavailable(build or f"{name} did not start")
    assert isinstance(build, BackgroundBuild)
    return build


@pytest.fixture
def arm64_build(system_host, background_builds) -> BackgroundBuild:
    return background_build(background_builds, "arm64_build")


def with_workspace(manifest: Path, workspace: Path, target: Path, edit: dict[str, str] | None = None) -> Path:
    """A copy of a manifest that writes into the test's workspace, with optional text edits."""
    text = manifest.read_text()
    for old, new in (edit or {}).items():
        assert old in text, old
        text = text.replace(old, new)
    if "bootstrapper:\n" in text:
        text = text.replace("bootstrapper:\n", f"bootstrapper:\n  workspace: {workspace}\n", 1)
    else:
        text += f"bootstrapper:\n  workspace: {workspace}\n"
    target.write_text(text)
    return target


def vzstages(
    *args: str, cache: Path, check: bool = True, timeout: float = 1500
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "vzstages", "--cache", str(cache), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"vzstages {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def leftovers(cache: Path) -> dict[str, list[str]]:
    """Mounts, loop devices and qemu-storage-daemon processes that belong to this cache."""
    mounts = [
        line.split()[4]
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if line.split()[4].startswith(str(cache))
    ]
    loops = [
        str(b)
        for b in Path("/sys/block").glob("loop*/loop/backing_file")
        if b.read_text().startswith(str(cache))
    ]
    daemons = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if cmdline.startswith("qemu-storage-daemon") and str(cache) in cmdline:
                daemons.append(cmdline)
    temps = [p.name for p in (cache / "stages").glob(".*")] if (cache / "stages").exists() else []
    return {"mounts": mounts, "loops": loops, "daemons": daemons, "temporary overlays": temps}


def nothing_left(cache: Path) -> None:
    left = leftovers(cache)
    assert left == {"mounts": [], "loops": [], "daemons": [], "temporary overlays": []}, left


def start_build(manifest: Path, cache: Path) -> subprocess.Popen[str]:
    """A build running in the background, to be interrupted by the test."""
    return subprocess.Popen(
        [sys.executable, "-m", "vzstages", "--cache", str(cache), "build", str(manifest)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_until_mounted(cache: Path, timeout: float) -> None:
    """Wait until a build using this cache has a disk mounted (a disk stage is running)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not leftovers(cache)["mounts"]:
        time.sleep(0.2)
    assert leftovers(cache)["mounts"], "the build never mounted its disk"
