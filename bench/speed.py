#!/usr/bin/env python3
"""Every speed figure in one run, one after another on this machine, each script's own output
shown as it comes, then the figures beside their targets:

    peers      bench/peers.py: the amd64 cold build against the hand-written script, mmdebstrap,
               mkosi and debos (warm and empty package caches); a rerun with nothing changed; a
               rerun after a hostname change
    arm64      bench/build_times.py manifests/ec2-arm64.yml (emulated through qemu-user), cold
    amd64      bench/build_times.py manifests/kvm.yml, cold, in the same run as arm64
    remote     bench/remote.py --only pull: a fresh cache from a warm remote against a cold build

    bench/speed.py [--only peers,arm64,amd64,remote]

The package cache is kept (VZSTAGES_PACKAGE_CACHE, as the build_times runs use it): cold means
an empty checkpoint cache and mmdebstrap run, not a download test (peers.py measures that too).
Needs root, like any build; about 35 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent

STEPS = {
    "peers": [str(BENCH / "peers.py")],
    "arm64": [
        str(BENCH / "build_times.py"),
        str(REPO / "manifests/ec2-arm64.yml"),
        "--keep-packages",
        "--no-publish",
        "--second",
        "none",
    ],
    "amd64": [
        str(BENCH / "build_times.py"),
        str(REPO / "manifests/kvm.yml"),
        "--keep-packages",
        "--second",
        "none",
    ],
    "remote": [str(BENCH / "remote.py"), "--only", "pull"],
}


def run_step(argv: list[str]) -> str:
    """Run one bench script, echoing its output as it comes; its output."""
    lines: list[str] = []
    with subprocess.Popen(
        [sys.executable, *argv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            print(f"  | {line.rstrip()}", flush=True)
            lines.append(line)
    if proc.returncode != 0:
        print(f"  ({Path(argv[0]).name} exited with status {proc.returncode})", flush=True)
    return "".join(lines)


def number(pattern: str, text: str) -> float | None:
    match = re.search(pattern, text, re.MULTILINE)
    return float(match.group(1)) if match else None


def summary(outputs: dict[str, str]) -> list[str]:
    """The figures beside the targets they answer to."""
    lines = []
    peers = outputs.get("peers", "")
    for ratio in re.findall(r"^  vzstages / (baseline|mkosi): ([0-9.]+)x$", peers, re.MULTILINE)[:2]:
        target = "at most 0.5x" if ratio[0] == "baseline" else "below 1x"
        lines.append(f"amd64 cold, warm .debs, vzstages / {ratio[0]}: {ratio[1]}x (target {target})")
    noop = number(r"^rerun with nothing changed: ([0-9.]+) s", peers)
    if noop is not None:
        lines.append(f"rerun with nothing changed: {noop:.2f} s (target under 1 s)")
    late = number(r"^rerun after a hostname change: ([0-9.]+) s", peers)
    if late is not None:
        lines.append(f"rerun after a hostname change: {late:.1f} s (target under 3 s)")
    arm64 = number(r"^cold build: ([0-9.]+) s wall", outputs.get("arm64", ""))
    amd64 = number(r"^cold build: ([0-9.]+) s wall", outputs.get("amd64", ""))
    if arm64 is not None and amd64 is not None:
        ratio = arm64 / amd64
        lines.append(f"arm64 cold {arm64:.1f} s, amd64 cold {amd64:.1f} s: {ratio:.1f}x (target at most 4x)")
    remote = outputs.get("remote", "")
    warm = number(r"^fresh cache, warm remote +([0-9.]+) s", remote)
    cold = number(r"^cold build, pushing +([0-9.]+) s", remote)
    if warm is not None and cold is not None:
        share = warm / cold
        lines.append(
            f"fresh cache on a warm remote {warm:.1f} s, cold {cold:.1f} s: {share:.0%} (target 10%)"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", default=",".join(STEPS), help=f"a subset of: {','.join(STEPS)}")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/speed.py builds images: run it as root")
    os.environ.setdefault("VZSTAGES_PACKAGE_CACHE", "/var/cache/vzstages-debs")
    wanted = [s for s in STEPS if s in args.only.split(",")]
    outputs: dict[str, str] = {}
    for step in wanted:
        started = time.monotonic()
        print(
            f"{step}: {' '.join(Path(a).name if a.startswith('/') else a for a in STEPS[step])}", flush=True
        )
        outputs[step] = run_step(STEPS[step])
        print(f"{step}: {time.monotonic() - started:.0f} s\n", flush=True)
    print(f"machine: {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}")
    print("\n".join(summary(outputs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
