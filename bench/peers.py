#!/usr/bin/env python3
"""vzstages against the peers, in one run on this machine: the same bookworm amd64 bootable image
(kernel, systemd, sshd, DHCP, grub, qcow2) from manifests/kvm.yml, built by

    baseline     a hand-written debootstrap + apt script (bench/baseline.sh)
    mmdebstrap   one mmdebstrap run with every package, and the same shell steps around it
    mkosi        mkosi 14 (Debian's), GPT ext4 with a BIOS boot partition, grub by hand
    debos        debos --disable-fakemachine, rootfs and disk image in two recipes
    vzstages     a cold build (empty checkpoint cache)

each with the packages already downloaded (warm), then vzstages and mkosi again with an empty
package cache (cold downloads). Prints each time and vzstages' ratios to the others, then the
iteration loop: a rerun with nothing changed and one after a hostname change.

    bench/peers.py [--rounds N] [--only baseline,vzstages,...]

Needs root, like any build; peers missing from the machine are installed from Debian first
(apt-get install mkosi debos mmdebstrap), and one that cannot run here is reported with why.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from vzstages.common.archive import choose_mirror  # noqa: E402


def run(argv: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> float:
    started = time.monotonic()
    with open(log, "a") as out:
        subprocess.run(argv, check=True, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    return time.monotonic() - started


def ensure_installed(packages: list[str]) -> None:
    missing = [p for p in packages if subprocess.run(["dpkg", "-s", p], capture_output=True).returncode]
    if missing:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], check=True, env=env
        )


class Bench:
    def __init__(self, work: Path, mirror: str, debs: Path | None = None):
        self.work = work
        self.mirror = mirror
        self.debs = debs or work / "debs"  # the package cache every warm build shares
        self.debs.mkdir(parents=True, exist_ok=True)
        self.log = work / "bench.log"

    def baseline(self, tool: str = "debootstrap", debs: Path | None = None) -> float:
        out = self.work / f"{tool}.qcow2"
        out.unlink(missing_ok=True)
        argv = [
            "sh",
            str(REPO / "bench/baseline.sh"),
            str(out),
            self.mirror,
            str(debs or self.debs / "amd64"),
            tool,
        ]
        return run(argv, self.log)

    def manifest(self, name: str, hostname: str = "vzstages-kvm") -> Path:
        text = (
            (REPO / "manifests/kvm.yml")
            .read_text()
            .replace("hostname: vzstages-kvm", f"hostname: {hostname}")
        )
        text = text.replace("bootstrapper:\n", f"bootstrapper:\n  workspace: {self.work / 'build'}\n", 1)
        path = self.work / name
        path.write_text(text)
        return path

    def vzstages(self, cache: Path, manifest: Path, debs: Path | None = None) -> float:
        env = {**os.environ, "VZSTAGES_PACKAGE_CACHE": str(debs or self.debs), "VZSTAGES_PROGRESS": "plain"}
        argv = [sys.executable, "-m", "vzstages", "--cache", str(cache), "build", str(manifest)]
        return run(argv, self.log, env=env, cwd=REPO)


def median(values: list[float]) -> float:
    return statistics.median(values)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=1, help="warm builds of each tool (median shown)")
    parser.add_argument("--only", default="", help="comma-separated subset of the tools")
    parser.add_argument(
        "--debs", help="an existing package cache to use for the warm builds (default: a new one)"
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/peers.py builds images: run it as root", file=sys.stderr)
        return 2
    ensure_installed(["debootstrap", "mmdebstrap"])
    only = set(filter(None, args.only.split(",")))
    work = Path(tempfile.mkdtemp(prefix="vzstages-peers-", dir="/var/tmp"))
    bench = Bench(work, choose_mirror(None), Path(args.debs) if args.debs else None)
    results: dict[str, list[float]] = {}
    try:
        # Fill the shared package cache once: every warm figure below downloads nothing.
        print("warming the package cache (a vzstages build, not counted)...", flush=True)
        bench.vzstages(work / "warm-cache", bench.manifest("warm.yml"))
        tools: dict[str, Callable[[int], float]] = {
            "baseline": lambda i: bench.baseline("debootstrap"),
            "mmdebstrap": lambda i: bench.baseline("mmdebstrap"),
            "vzstages": lambda i: bench.vzstages(work / f"cold-{i}", bench.manifest(f"cold-{i}.yml")),
        }
        for name, build in tools.items():
            if only and name not in only:
                continue
            for i in range(args.rounds):
                seconds = build(i)
                results.setdefault(name, []).append(seconds)
                print(f"  {name:<11} warm round {i + 1}: {seconds:6.1f} s", flush=True)

        print("\nwarm package cache (median of rounds):")
        for name, times in results.items():
            print(f"  {name:<11} {median(times):6.1f} s")
        if "vzstages" in results:
            ours = median(results["vzstages"])
            for name, times in results.items():
                if name != "vzstages":
                    print(f"  vzstages / {name}: {ours / median(times):.2f}x")

            if not only or "cold" in only:
                empty = work / "empty-debs"
                cold = bench.vzstages(work / "cold-empty", bench.manifest("cold-empty.yml"), debs=empty)
                print(f"\nempty package cache: vzstages {cold:.1f} s")
                shutil.rmtree(empty, ignore_errors=True)
                base = bench.baseline("debootstrap", debs=work / "empty-base")
                print(f"empty package cache: baseline {base:.1f} s ({cold / base:.2f}x)")

            cache = work / "cold-0"
            noop = bench.vzstages(cache, work / "cold-0.yml")
            renamed = bench.vzstages(cache, bench.manifest("cold-0.yml", hostname="renamed"))
            print(f"\nrerun with nothing changed: {noop:.2f} s")
            share = 100 * renamed / ours
            print(f"rerun after a hostname change: {renamed:.1f} s ({share:.1f}% of the cold build)")
    finally:
        print(f"(log: {bench.log})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
