"""The one edge where vzstages touches the host: every external command goes through `Host.run`.

Each command and its output go to the build log; a failure raises CommandError with the output's
tail. Tests of the core logic use a `Host` subclass that records instead of running.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .errors import CommandError, HostError

log = logging.getLogger("vzstages.host")

# Host tool -> Debian package that provides it, so a missing tool can be reported usefully.
TOOL_PACKAGES: dict[str, str] = {
    "debootstrap": "debootstrap",
    "qemu-img": "qemu-utils",
    "qemu-storage-daemon": "qemu-system-common",
    "qemu-system-x86_64": "qemu-system-x86",
    "sfdisk": "fdisk",
    "losetup": "mount",
    "mount": "mount",
    "umount": "mount",
    "mkfs.ext2": "e2fsprogs",
    "mkfs.ext3": "e2fsprogs",
    "mkfs.ext4": "e2fsprogs",
    "mkfs.xfs": "xfsprogs",
    "e2fsck": "e2fsprogs",
    "xfs_repair": "xfsprogs",
    "fsck.vfat": "dosfstools",
    "mkswap": "util-linux",
    "chroot": "coreutils",
    "tar": "tar",
    "pvcreate": "lvm2",
    "vgcreate": "lvm2",
    "lvcreate": "lvm2",
    "pvs": "lvm2",
    "mmd": "mtools",
    "mcopy": "mtools",
    "mmdebstrap": "mmdebstrap",
    "zerofree": "zerofree",
}

# Commands inside a chroot get a clean, predictable environment instead of the caller's.
CHROOT_ENV = {
    "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    "LC_ALL": "C.UTF-8",
    "LANG": "C.UTF-8",
    "DEBIAN_FRONTEND": "noninteractive",
    "DEBCONF_NONINTERACTIVE_SEEN": "true",
    "HOME": "/root",
    "TZ": "UTC",
}

# What every host command runs with, whatever the caller's shell had: a hardened root shell's
# umask 077 made files apt's unprivileged fetcher could not read, and a caller's locale or time
# zone must not reach the image nor change what a command prints for vzstages to read.
HOST_ENV = {"LC_ALL": "C.UTF-8", "LANG": "C.UTF-8", "LANGUAGE": "", "TZ": "UTC"}
UMASK = 0o022


@dataclass(frozen=True)
class Result:
    argv: list[str]
    returncode: int
    output: str


class Host:
    """Runs host commands, logging each with its output."""

    def run(
        self,
        argv: list[str],
        *,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
        check: bool = True,
        secret_input: bool = False,
    ) -> Result:
        log.info("$ %s", " ".join(argv))
        if input is not None and not secret_input:
            log.debug("  stdin: %s", input.rstrip()[:2000])
        full_env = {**os.environ, **HOST_ENV, **(env or {})}
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=full_env,
                text=True,
                errors="replace",
                # A group of its own: on Ctrl-C or SIGTERM the build stops the command and all it
                # started (mmdebstrap's apt, a maintainer script's children) before it unmounts.
                start_new_session=True,
                umask=UMASK,
            )
        except OSError as exc:
            raise CommandError(argv, 127, f"cannot run {argv[0]}: {exc.strerror}") from None
        if input is not None:
            threading.Thread(target=_feed, args=(proc, input), daemon=True).start()
        lines: list[str] = []
        assert proc.stdout is not None
        try:
            with proc.stdout:
                # Each line reaches the build log as it comes: a ten-minute emulated debootstrap
                # is followed live with `tail -f`, not written out when it ends.
                for line in proc.stdout:
                    lines.append(line)
                    log.debug("  %s", line.rstrip("\n"))
            returncode = proc.wait()
        except BaseException:
            log.warning("interrupted: stopping %s (pid %s)", argv[0], proc.pid)
            stop_process_group(proc)
            raise
        output = "".join(lines)
        if check and returncode != 0:
            raise CommandError(argv, returncode, output)
        return Result(argv, returncode, output)

    def chroot(
        self,
        root: Path,
        argv: list[str],
        *,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
        check: bool = True,
        secret_input: bool = False,
    ) -> Result:
        # env -i: nothing of the build host's environment leaks into the image's maintainer scripts.
        merged = {**CHROOT_ENV, **(env or {})}
        env_args = [f"{k}={v}" for k, v in sorted(merged.items())]
        return self.run(
            ["chroot", str(root), "/usr/bin/env", "-i", *env_args, *argv],
            input=input,
            check=check,
            secret_input=secret_input,
        )

    def attached(self, argv: list[str], env: Mapping[str, str] | None = None) -> int:
        """A command on the caller's terminal (a shell in a stage's tree, a VM's console): its
        input and output are the user's; returns its exit status."""
        log.info("$ %s (on the terminal)", " ".join(argv))
        try:
            return subprocess.run(argv, env={**os.environ, **HOST_ENV, **(env or {})}, umask=UMASK).returncode
        except OSError as exc:
            raise CommandError(argv, 127, f"cannot run {argv[0]}: {exc.strerror}") from None

    def spawn(self, argv: list[str]) -> subprocess.Popen[bytes]:
        """A long-running command whose raw output the caller reads as it comes (a VM's serial
        console); stop it with `stop_process_group`."""
        log.info("$ %s (in the background)", " ".join(argv))
        try:
            return subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env={**os.environ, **HOST_ENV},
                start_new_session=True,
                umask=UMASK,
            )
        except OSError as exc:
            raise CommandError(argv, 127, f"cannot run {argv[0]}: {exc.strerror}") from None

    def chroot_attached(self, root: Path, argv: list[str]) -> int:
        """`attached` inside the image, with the same clean environment as `chroot` (and the
        caller's TERM, so a shell's line editing works)."""
        merged = {**CHROOT_ENV, "TERM": os.environ.get("TERM", "dumb")}
        env_args = [f"{k}={v}" for k, v in sorted(merged.items())]
        return self.attached(["chroot", str(root), "/usr/bin/env", "-i", *env_args, *argv])


def stop_process_group(proc: subprocess.Popen[str] | subprocess.Popen[bytes], grace: float = 20.0) -> None:
    """SIGTERM to the command's process group, time to clean up after itself (mmdebstrap
    unmounts what it mounted), then SIGKILL to whatever is left of the group."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        deadline = time.monotonic() + wait
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if proc.poll() is not None:
            # The leader is gone; its group may not be (a daemonized grandchild).
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            return


def _feed(proc: subprocess.Popen[str], text: str) -> None:
    assert proc.stdin is not None
    with contextlib.suppress(BrokenPipeError, OSError):
        proc.stdin.write(text)
        proc.stdin.close()


def qemu_img_check(path: Path) -> str | None:
    """None if `qemu-img check` finds the qcow2 consistent, else what it says."""
    result = Host().run(["qemu-img", "check", "-q", "-f", "qcow2", str(path)], check=False)
    if result.returncode == 0:
        return None
    return result.output.strip() or f"qemu-img check exit {result.returncode}"


@functools.cache
def package_versions(packages: tuple[str, ...]) -> dict[str, str]:
    """The installed version of each Debian package of the build host ("absent" when it is not
    installed, "unknown" off Debian), as keys name the tools that shaped a checkpoint."""
    versions = dict.fromkeys(packages, "absent")
    if not packages:
        return versions
    try:
        listed = subprocess.run(
            ["dpkg-query", "-W", "-f", "${Package}\t${db:Status-Abbrev}\t${Version}\n", *packages],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return dict.fromkeys(packages, "unknown")
    for line in listed.splitlines():
        name, status, version = [*line.split("\t"), "", ""][:3]
        if name.split(":")[0] in versions and status.startswith("ii"):
            versions[name.split(":")[0]] = version
    return versions


def missing_tools(tools: Iterable[str]) -> list[str]:
    return sorted({t for t in tools if shutil.which(t) is None})


def require_tools(tools: Iterable[str]) -> None:
    """Report every missing tool at once, each with the Debian package that provides it."""
    missing = missing_tools(tools)
    if missing:
        lines = [f"  {t} (apt-get install {TOOL_PACKAGES.get(t, t)})" for t in missing]
        packages = sorted({TOOL_PACKAGES.get(t, t) for t in missing})
        raise HostError(
            "missing host tools:\n"
            + "\n".join(lines)
            + f"\ninstall them with: apt-get install {' '.join(packages)}"
        )


def require_build_host() -> None:
    """Building needs root, loop devices and FUSE; listing, validating and planning do not."""
    problems = []
    if os.geteuid() != 0:
        problems.append("building an image needs root (listing, validating and planning do not)")
    if not Path("/dev/loop-control").exists():
        problems.append("no loop device support (/dev/loop-control is missing; modprobe loop)")
    if not Path("/dev/fuse").exists():
        problems.append("no FUSE support (/dev/fuse is missing; modprobe fuse)")
    if problems:
        raise HostError("this host cannot build images:\n  " + "\n  ".join(problems))
