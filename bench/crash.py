#!/usr/bin/env python3
"""Crash at any instant: SIGKILL builds at random moments, again and again, and check after each.

    bench/crash.py [manifests/kvm.yml] [--kills 100] [--seed N] [--longest 12] [--remote]

A warm chain of the manifest is built first. Then each round edits the hostname (so the system,
cleanup and image stages run) or, every fifth round, the package list (the packages stage runs
too), starts the build and SIGKILLs its whole process group after a random delay: no unwinding,
as when power is lost. After each kill: `cache verify` must pass, and the next build of the same
manifest must succeed with every filesystem of its image clean. It prints how many kills landed
in which state (which stage was running, or the image conversion, or nothing left to do), and
anything lost: a cache that did not verify, a build that failed after a kill, a leftover mount, a
half-written image left beside the workspace's image.
With --remote, two caches (two hosts) share a remote folder, and a round kills a build on
either (which pulls and pushes), a push, a pull or a remote gc; after each kill the remote must
also hold nothing that does not verify, and the next build must not warn.
Needs root, like any build.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from build_times import in_workspace  # noqa: E402  (bench/, this script's folder)


def vzstages(cache: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "vzstages", "--cache", str(cache), *args]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=3600)


def running_stage(cache: Path, workspace: Path) -> str:
    """Where a build was when it was killed: the stage it had mounted (its run folder's name,
    `fsck` for the image check), the image conversion (a file being written aside), or neither
    (planning, a stage without a disk, or between stages)."""
    runs = cache / "runs"
    stages = (
        sorted({p.name for run in runs.iterdir() if run.is_dir() for p in run.iterdir()})
        if runs.is_dir()
        else []
    )
    if stages:
        return "+".join(stages)
    if workspace.is_dir() and any(workspace.glob(".*.partial")):
        return "image conversion"
    return "planning or between stages"


class Losses(list[str]):
    """What went wrong, printed as it is found: a run stopped early still tells."""

    def append(self, item: str) -> None:
        print(f"LOST {item}", flush=True)
        super().append(item)


def edited(source: Path, work: Path, round_: int) -> Path:
    manifest = in_workspace(source, work, f"crash-{round_}.yml")
    text = manifest.read_text().replace("hostname: vzstages-kvm", f"hostname: crash-{round_}")
    if round_ % 5 == 4:
        text = text.replace("    - less\n", f"    - less\n    - {['bc', 'file', 'jq'][round_ % 3]}\n")
    manifest.write_text(text)
    return manifest


@dataclass(frozen=True)
class Action:
    """One thing a round starts and kills: which cache it runs against, and its arguments."""

    name: str
    cache: Path
    argv: tuple[str, ...]
    remote: tuple[str, ...] = ()  # how this host's builds use the remote
    fresh: bool = False  # the cache is emptied first: a host that has nothing yet


def action_of(work: Path, manifest: Path, remote: Path | None, rng: random.Random) -> Action:
    """Without a remote, a build. With a remote: a build on host A (which only reads the remote,
    so its push has work to do), a push from A, a build on host B (which pulls what it misses and
    pushes what it built), a pull into a host that has nothing yet, or a remote gc."""
    first, second, third = work / "cache", work / "cache-b", work / "cache-c"
    build = ("build", "--force", str(manifest))
    if remote is None:
        return Action("build", first, build)
    shared = ("--remote", str(remote))
    reader = (*shared, "--remote-mode", "read")
    choices = [
        Action("build on host A", first, (*build, *reader), reader),
        Action("build on host B", second, (*build, *shared), shared),
        Action("push from A", first, ("cache", "push", *shared), reader),  # all A built
        Action("pull into a new host", third, ("cache", "pull", *shared, str(manifest)), shared, fresh=True),
        Action("remote gc", first, ("cache", "gc", *shared, "--max-size", "1G"), reader),
    ]
    return rng.choices(choices, weights=(3, 2, 2, 2, 1))[0]


def killed(action: Action, rng: random.Random, longest: float, workspace: Path) -> str:
    """Run the action, SIGKILL its whole process group after a random delay (no unwinding, as
    when power is lost), and say where it was."""
    if action.fresh:
        shutil.rmtree(action.cache, ignore_errors=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "vzstages", "--cache", str(action.cache), *action.argv],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    time.sleep(rng.uniform(0.1, longest))
    if proc.poll() is None:
        state = running_stage(action.cache, workspace) if action.argv[0] == "build" else "under way"
        os.killpg(proc.pid, signal.SIGKILL)
    else:
        state = "finished before the kill"
    proc.wait()
    return state if action.name == "build" else f"{action.name}: {state}"


def check_after(
    action: Action, manifest: Path, remote: Path | None, work: Path, lost: Losses, round_: int
) -> None:
    """The killed cache verifies; its next build (pulling and pushing when there is a remote)
    finishes with every filesystem clean and no warning; nothing is left half-written beside
    the image; the remote holds nothing that does not verify."""
    verify = vzstages(action.cache, "cache", "verify")
    if verify.returncode != 0:
        lost.append(f"round {round_}: cache verify failed after a kill in {action.name}:\n{verify.stdout}")
    rebuilt = vzstages(action.cache, "build", "--force", *action.remote, str(manifest))
    out = rebuilt.stdout + rebuilt.stderr
    if rebuilt.returncode != 0 or not ("every filesystem clean" in out or "up to date" in out):
        lost.append(f"round {round_}: the build after a kill in {action.name} failed:\n{out[-2000:]}")
    warnings = [line for line in out.splitlines() if "warning" in line.lower()]
    if warnings:
        lost.append(f"round {round_}: the build after a kill in {action.name} warned: {warnings}")
    halves = sorted(p.name for p in (work / "build").glob(".*.partial"))
    if halves:  # a killed conversion's file left aside; the next writer must remove it
        lost.append(f"round {round_}: left in the workspace after the next build: {halves}")
    if remote is not None:
        gc = vzstages(action.cache, "cache", "gc", "--remote", str(remote), "--dry-run", "--max-size", "1T")
        junk = [line for line in gc.stdout.splitlines() if "does not verify" in line]
        if gc.returncode != 0 or junk:
            lost.append(f"round {round_}: the remote after a kill in {action.name}: {junk or gc.stderr}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("manifest", nargs="?", default=str(REPO / "manifests/kvm.yml"))
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--longest", type=float, default=12.0, help="kill within this many seconds")
    parser.add_argument("--remote", action="store_true", help="two caches sharing a remote folder")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (kept anyway on a loss)")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="vzstages-crash-"))
    remote = work / "remote" if args.remote else None
    if remote:
        remote.mkdir()  # a shared folder is mounted by its hosts, never made by them
    base = in_workspace(Path(args.manifest), work, "base.yml")
    started = time.monotonic()
    shared = ("--remote", str(remote)) if remote else ()
    warm = vzstages(work / "cache", "build", "--force", *shared, str(base))
    if warm.returncode != 0:
        print(warm.stdout + warm.stderr)
        return 1
    print(f"warm chain built in {time.monotonic() - started:.0f}s ({work})")
    states: Counter[str] = Counter()
    lost = Losses()
    for round_ in range(args.kills):
        manifest = edited(Path(args.manifest), work, round_)
        action = action_of(work, manifest, remote, rng)
        state = killed(action, rng, args.longest, work / "build")
        states[state] += 1
        check_after(action, manifest, remote, work, lost, round_)
        print(f"kill {round_ + 1:>3}/{args.kills}: {state}", flush=True)
    mounts = [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if str(work) in line]
    if mounts:
        lost.append(f"{len(mounts)} mounts left under {work}")
    print(f"\n{args.kills} kills in {time.monotonic() - started:.0f}s; states reached:")
    for state, count in states.most_common():
        print(f"  {count:>4}  {state}")
    print(f"lost: {len(lost)}")
    for line in lost:
        print(f"  {line}")
    if lost or args.keep:
        print(f"work folder kept: {work}")
    else:
        shutil.rmtree(work)  # gigabytes of checkpoints and images
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
