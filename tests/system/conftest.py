"""System tests: real builds with real tools, as root. On a machine without the prerequisites they
skip with the reason; under CI=true a missing prerequisite fails instead."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest

from vzstages.build import load_plan
from vzstages.common.archive import choose_mirror
from vzstages.host import Host
from vzstages.volume.disk import Tree, opened_readonly

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


# The session's checkpoints, images and caches peaked at 21.4 GB in a run on 2026-11-30 (each
# file's images removed when it ends); a disk that cannot hold that fails every late test at once.
FREE_DISK = 20 << 30


def missing_prerequisites() -> list[str]:
    missing = []
    if os.geteuid() != 0:
        missing.append("root")
    missing += [f"/dev/{d}" for d in ("loop-control", "fuse") if not Path(f"/dev/{d}").exists()]
    missing += [t for t in TOOLS if shutil.which(t) is None]
    scratch = tempfile.gettempdir()
    free = shutil.disk_usage(scratch).free
    if free < FREE_DISK:
        missing.append(f"{FREE_DISK >> 30} GiB free in {scratch} (there are {free / (1 << 30):.1f})")
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


# How long a boot test waits for its facts. A TCG guest needs 80-100 s on an idle core; beside
# the emulated arm64 build and the other worker, one reached cloud-init's last stage at 362 s of
# uptime (CI, 2026-11-30). The limit only decides how long a broken boot takes to fail.
BOOT_TIMEOUT = 600


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


# Files in the shared workspace above this size are images (SBOMs, results and logs are smaller).
IMAGE_SIZE = 1 << 20


@pytest.fixture(scope="module", autouse=True)
def images_removed_after_each_file(workspace: Path) -> Iterator[None]:
    """A file's images go when the file is done: kept, a session's images took over 20 GB, and CI's
    disk ran out (2026-11-30). Checkpoints stay in the shared cache, so a later file that needs an
    image again only converts it."""
    yield
    for path in workspace.rglob("*"):
        if path.is_file() and not path.is_symlink() and path.stat().st_size > IMAGE_SIZE:
            path.unlink()


@dataclass
class BackgroundBuild:
    """A build started when the session starts, for a test near its end to check. It lives in a
    folder every pytest-xdist worker sees: one worker starts it, any worker's test may wait for it."""

    folder: Path
    manifest: Path
    proc: subprocess.Popen[str] | None = None  # in the worker that started it

    @property
    def cache(self) -> Path:
        return self.folder / "cache"

    @property
    def workspace(self) -> Path:
        return self.folder / "build"

    @property
    def log(self) -> Path:
        return self.folder / "build.log"

    @property
    def status(self) -> Path:
        return self.folder / "status"  # the build's exit status, written when it ends

    def finished(self) -> bool:
        return self.status.exists()

    def wait(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while not self.finished():
            if time.monotonic() > deadline:
                raise AssertionError(f"the background build ran over {timeout:.0f}s:\n{self.log.read_text()}")
            time.sleep(2)
        output = self.log.read_text()
        assert self.status.read_text().strip() == "0", output
        return output

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # vzstages unwinds on SIGTERM
            self.proc.wait(timeout=120)


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
    # Every program in its chroot runs under qemu-user: about ten minutes. Without the manifest's
    # one extra package, ca-certificates, whose scripts cost a sixth of that under emulation (the
    # README's arm64 breakdown) and which the test does not look at.
    "arm64_build": (
        "manifests/ec2-arm64.yml",
        {"packages:\n  install:\n    - ca-certificates\n": ""},
        ["--no-publish"],
        arm64_missing,
    ),
}
UNAVAILABLE = "unavailable"  # in a background build's folder: why it could not start


def session_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's base folder, which every pytest-xdist worker of the session shares."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def starts_background_builds() -> bool:
    """Every xdist worker collects every test; the first one starts the session's background builds."""
    return os.environ.get("PYTEST_XDIST_WORKER", "gw0") == "gw0"


@pytest.fixture(scope="session", autouse=True)
def background_builds(request, tmp_path_factory) -> Iterator[dict[str, BackgroundBuild]]:
    """The background builds the collected tests ask for."""
    wanted = sorted({n for item in request.session.items for n in item.fixturenames if n in BACKGROUND})
    builds: dict[str, BackgroundBuild] = {}
    for name in wanted:
        manifest, edit, arguments, missing = BACKGROUND[name]
        folder = session_folder(tmp_path_factory) / "background" / name
        builds[name] = BackgroundBuild(folder, folder / Path(manifest).name)
        if not starts_background_builds():
            continue
        folder.mkdir(parents=True)
        absent = missing_prerequisites() or missing()
        if absent:
            (folder / UNAVAILABLE).write_text(f"{name} needs: " + "; ".join(absent))
        else:
            builds[name].proc = start_background_build(REPO / manifest, edit, arguments, builds[name])
    yield builds
    for build in builds.values():
        # Another worker's test may still wait for it; then stop it should the session have ended
        # first (a failure, -x).
        if build.proc is not None and os.environ.get("PYTEST_XDIST_WORKER"):
            with contextlib.suppress(AssertionError):
                build.wait(timeout=2400)
        build.stop()


def start_background_build(
    source: Path, edit: dict[str, str], arguments: list[str], build: BackgroundBuild
) -> subprocess.Popen[str]:
    with_workspace(source, build.workspace, build.manifest, edit=edit)
    command = [sys.executable, "-m", "vzstages", "--cache", str(build.cache), "build", *arguments]
    # The status goes in last, whole (renamed into place): its presence means the build ended.
    script = 'rc=0; "$@" || rc=$?; echo $rc > "$STATUS.part"; mv "$STATUS.part" "$STATUS"'
    with open(build.log, "w") as out:
        return subprocess.Popen(
            ["sh", "-c", script, "sh", *command, str(build.manifest)],
            cwd=REPO,
            env={**os.environ, "STATUS": str(build.status)},
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )


def background_build(builds: dict[str, BackgroundBuild], name: str) -> BackgroundBuild:
    build = builds[name]
    deadline = time.monotonic() + 120  # another worker may not have started it yet
    while not build.log.exists() and not (build.folder / UNAVAILABLE).exists():
        if time.monotonic() > deadline:
            unavailable(f"{name} did not start")
        time.sleep(1)
    if (build.folder / UNAVAILABLE).exists():
        unavailable((build.folder / UNAVAILABLE).read_text())
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


# A caller a build must not depend on: a hardened root shell's umask, another time zone and
# locale, another host name (a UTS namespace of its own), one CPU, another working folder.
HARDENED = ["unshare", "--uts", "sh", "-c", 'umask 077; hostname elsewhere; exec taskset -c 0 "$@"', "sh"]
HARDENED_ENV = {"TZ": "Asia/Tokyo", "LC_ALL": "de_DE.UTF-8", "LANG": "de_DE.UTF-8"}


def vzstages(
    *args: str,
    cache: Path,
    check: bool = True,
    timeout: float = 1500,
    hardened: bool = False,
    force: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run vzstages. Tests share one workspace across manifests that write one image name (their
    image stages then reuse each other's work), so builds replace it with --force unless told not to."""
    if force and args and args[0] == "build":
        args = ("build", "--force", *args[1:])
    command = [sys.executable, "-m", "vzstages", "--cache", str(cache), *args]
    proc = subprocess.run(
        [*HARDENED, *command] if hardened else command,
        cwd="/" if hardened else REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **HARDENED_ENV} if hardened else None,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"vzstages {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


@contextlib.contextmanager
def image_tree(manifest: Path, cache: Path, folder: Path, stage: str = "cleanup") -> Iterator[Tree]:
    """The built image's tree as a stage left it (the last disk stage by default), read-only."""
    plan = load_plan(manifest, cache)
    folder.mkdir()
    with opened_readonly(Host(), plan.checkpoint(plan.stage(stage)), plan.manifest.layout, folder) as tree:
        yield tree


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
        [sys.executable, "-m", "vzstages", "--cache", str(cache), "build", "--force", str(manifest)],
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


@pytest.fixture
def remote(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A fresh bucket; the `--remote ...` arguments that point a build at it."""
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")):
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    bucket = f"vzstages-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=moto_endpoint).create_bucket(Bucket=bucket)
    return ["--remote", f"s3://{bucket}/ci", "--remote-endpoint", moto_endpoint]


def copy_stages(source: Path, target: Path, manifest: Path, stages: tuple[str, ...]) -> None:
    plan = load_plan(manifest, source)
    (target / "stages").mkdir(parents=True, exist_ok=True)
    for stage in plan.stages:
        if stage.name in stages:
            for path in (
                plan.store.checkpoint(stage.name, stage.key),
                plan.store.record_path(stage.name, stage.key),
            ):
                shutil.copy2(path, target / "stages" / path.name)
