#!/usr/bin/env python3
"""vzstages against the peers, in one run on this machine: the same bookworm amd64 bootable image
(bench/packages: kernel, systemd, sshd, DHCP, grub; a 2 GiB ext4 root on gpt; qcow2) that
manifests/kvm.yml describes, built by

    baseline     a hand-written debootstrap + apt script (bench/baseline.sh)
    mmdebstrap   the same script with one mmdebstrap run for the base system and every package
    mkosi        mkosi 14 (Debian's): bench/mkosi/, grub by its finalize script
    debos        debos --disable-fakemachine: bench/debos/rootfs.yaml, then bench/debos/disk.yaml
    vzstages     a cold build (empty checkpoint cache)

Every tool gets the same packages, the same mirror (the build host's), and the same boot setup
(bench/common-prepare.sh, bench/install-grub.sh).

Warm: the packages are already downloaded. The .deb cache is shared by baseline, mmdebstrap and
vzstages, and copied for mkosi (mkosi 14 runs debootstrap without a cache, so its base system is
downloaded every time); debos has no package cache at all. Cold: an empty package cache, for
vzstages, mkosi and the baseline. Then vzstages' iteration loop: a rerun with nothing changed,
and one after a hostname change.

    bench/peers.py [--rounds N] [--only baseline,mkosi,vzstages,...] [--debs DIR] [--boot]

--boot boots each image once under QEMU and says whether it reached sshd. Needs root, like any
build; peers missing from the machine are installed from Debian first.
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
BENCH = REPO / "bench"
sys.path.insert(0, str(REPO))

from vzstages.boottest import boot  # noqa: E402
from vzstages.common.archive import choose_mirror  # noqa: E402

TOOLS = ["baseline", "mmdebstrap", "mkosi", "debos", "vzstages"]
COLD_TOOLS = ["vzstages", "mkosi", "baseline"]  # debos keeps no package cache: warm is cold
PEER_PACKAGES = ["debootstrap", "mmdebstrap", "mkosi", "systemd-container", "debos", "parted"]


def run(argv: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> float:
    started = time.monotonic()
    with open(log, "a") as out:
        out.write(f"\n$ {' '.join(argv)}\n")
        out.flush()
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
        self.packages = (BENCH / "packages").read_text().strip()
        self.images: dict[str, Path] = {}

    def output(self, label: str) -> Path:
        path = self.work / "images" / f"{label}.qcow2"
        path.parent.mkdir(exist_ok=True)
        path.unlink(missing_ok=True)
        self.images[label] = path
        return path

    def baseline(self, label: str, tool: str = "debootstrap", debs: Path | None = None) -> float:
        debs = debs or self.debs / "amd64"
        argv = ["sh", str(BENCH / "baseline.sh"), str(self.output(label)), self.mirror, str(debs), tool]
        return run(argv, self.log)

    def mkosi(self, label: str, cache: Path) -> float:
        argv = [
            "mkosi",
            "-C",
            str(BENCH / "mkosi"),
            f"--mirror={self.mirror}",
            f"--cache={cache}",
            f"--output={self.output(label)}",
            f"--package={self.packages}",
            "--force",
            "build",
        ]
        return run(argv, self.log)

    def debos(self, label: str) -> float:
        artifacts = self.work / "debos"
        shutil.rmtree(artifacts, ignore_errors=True)
        artifacts.mkdir()
        common = ["debos", "--disable-fakemachine", f"--artifactdir={artifacts}"]
        variables = ["-t", f"mirror:{self.mirror}", "-t", f"packages:{self.packages.replace(',', ', ')}"]
        seconds = run([*common, *variables, str(BENCH / "debos/rootfs.yaml")], self.log, cwd=artifacts)
        seconds += run([*common, str(BENCH / "debos/disk.yaml")], self.log, cwd=artifacts)
        convert = [
            "qemu-img",
            "convert",
            "-O",
            "qcow2",
            str(artifacts / "debos.raw"),
            str(self.output(label)),
        ]
        seconds += run(convert, self.log)
        shutil.rmtree(artifacts, ignore_errors=True)
        return seconds

    def manifest(self, name: str, hostname: str = "vzstages-kvm") -> Path:
        text = (
            (REPO / "manifests/kvm.yml")
            .read_text()
            .replace("hostname: vzstages-kvm", f"hostname: {hostname}")
        )
        text = text.replace("bootstrapper:\n", f"bootstrapper:\n  workspace: {self.work / name}.d\n", 1)
        path = self.work / name
        path.write_text(text)
        return path

    def vzstages(self, label: str, cache: Path, manifest: Path, debs: Path | None = None) -> float:
        # The peers keep packages, not base systems: neither may vzstages (base_trees.py).
        shutil.rmtree((debs or self.debs) / "base-trees", ignore_errors=True)
        env = {**os.environ, "VZSTAGES_PACKAGE_CACHE": str(debs or self.debs), "VZSTAGES_PROGRESS": "plain"}
        argv = [sys.executable, "-m", "vzstages", "--cache", str(cache), "build", "--force", str(manifest)]
        seconds = run(argv, self.log, env=env, cwd=REPO)
        built = Path(f"{manifest}.d") / "debian-bookworm-amd64-kvm.qcow2"
        if built.exists():
            shutil.copyfile(built, self.output(label))
        return seconds


def ratio_lines(results: dict[str, float]) -> list[str]:
    if "vzstages" not in results:
        return []
    ours = results["vzstages"]
    return [f"  vzstages / {name}: {ours / t:.2f}x" for name, t in results.items() if name != "vzstages"]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=1, help="warm builds of each tool (median shown)")
    parser.add_argument("--only", default="", help=f"a comma-separated subset of: {', '.join(TOOLS)}, cold")
    parser.add_argument("--debs", help="an existing package cache to use for the warm builds")
    parser.add_argument("--boot", action="store_true", help="boot each image once and report")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/peers.py builds images: run it as root", file=sys.stderr)
        return 2
    only = set(filter(None, args.only.split(","))) or {*TOOLS, "cold"}
    ensure_installed(PEER_PACKAGES)
    work = Path(tempfile.mkdtemp(prefix="vzstages-peers-", dir="/var/tmp"))
    bench = Bench(work, choose_mirror(None), Path(args.debs) if args.debs else None)
    print(f"machine: {os.cpu_count()} cores; work folder {work}", flush=True)
    try:
        # Fill the shared package cache once: every warm figure below downloads nothing of it.
        print("warming the package cache (a vzstages build and a baseline build, not counted)...", flush=True)
        bench.vzstages("warm-up", work / "warm-cache", bench.manifest("warm.yml"))
        bench.baseline("warm-up")  # what debootstrap (not mmdebstrap) downloads for its base
        mkosi_cache = work / "mkosi-cache"
        warm: dict[str, Callable[[int], float]] = {
            "baseline": lambda i: bench.baseline("baseline"),
            "mmdebstrap": lambda i: bench.baseline("mmdebstrap", tool="mmdebstrap"),
            "mkosi": lambda i: bench.mkosi("mkosi", mkosi_cache),
            "debos": lambda i: bench.debos("debos"),
            "vzstages": lambda i: bench.vzstages(
                "vzstages", work / f"cold-{i}", bench.manifest(f"cold-{i}.yml")
            ),
        }
        if "mkosi" in only:
            shutil.copytree(bench.debs / "amd64", mkosi_cache, copy_function=os.link, dirs_exist_ok=True)
        medians: dict[str, float] = {}
        for name, build in warm.items():
            if name not in only:
                continue
            times = []
            for i in range(args.rounds):
                times.append(build(i))
                print(f"  {name:<11} warm round {i + 1}: {times[-1]:6.1f} s", flush=True)
            medians[name] = statistics.median(times)
        print("\nwarm package cache (median of rounds):")
        for name, seconds in medians.items():
            print(f"  {name:<11} {seconds:6.1f} s")
        print("\n".join(ratio_lines(medians)))

        if "cold" in only:
            print("\nempty package cache:", flush=True)
            cold: dict[str, float] = {}
            for name in COLD_TOOLS:
                empty = work / f"empty-{name}"
                if name == "vzstages":
                    manifest = bench.manifest("cold-empty.yml")
                    cold[name] = bench.vzstages("vzstages-cold", work / "cold-empty", manifest, debs=empty)
                elif name == "mkosi":
                    cold[name] = bench.mkosi("mkosi-cold", empty)
                else:
                    cold[name] = bench.baseline("baseline-cold", debs=empty)
                shutil.rmtree(empty, ignore_errors=True)
                print(f"  {name:<11} {cold[name]:6.1f} s", flush=True)
            if "debos" in medians:
                print(f"  debos       {medians['debos']:6.1f} s (its warm figure: it never caches packages)")
                cold["debos"] = medians["debos"]
            print("\n".join(ratio_lines(cold)))

        if "vzstages" in medians:
            cache, manifest = work / "cold-0", work / "cold-0.yml"
            noop = bench.vzstages("noop", cache, manifest)
            renamed = bench.vzstages("renamed", cache, bench.manifest("cold-0.yml", hostname="renamed"))
            print(f"\nrerun with nothing changed: {noop:.2f} s")
            share = 100 * renamed / medians["vzstages"]
            print(f"rerun after a hostname change: {renamed:.1f} s ({share:.1f}% of the cold build)")

        if args.boot:
            print("\nboot check (QEMU, until sshd answers):", flush=True)
            for label in sorted({"baseline", "mmdebstrap", "mkosi", "debos", "vzstages"} & set(bench.images)):
                report = boot(bench.images[label], timeout=600)
                verdict = "boots" if report.ok else f"FAILED ({report.failure or ', '.join(report.missing)})"
                print(f"  {label:<11} {verdict} in {report.seconds:.0f} s", flush=True)
    finally:
        print(f"(log: {bench.log})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
