#!/usr/bin/env python3
"""Build a manifest cold and print the total and per-stage times, then what the cache saves.

    bench/build_times.py [manifests/kvm.yml] [--keep-packages] [--second manifests/virtualbox.yml|none]
                         [--no-publish] [--repo OTHER-CHECKOUT] [--tmpfs]

Cold means an empty checkpoint cache and (unless --keep-packages) an empty package cache, so
the figures include every download. Then: a rerun with nothing changed, a rerun after a late
change (the hostname), and the checkpoints' total allocated size against the final image's.
Last, a cold build of a second manifest on the same release (fresh checkpoint cache, same package
cache), counting the packages it downloaded that the first build had already downloaded.
--repo runs the vzstages of another checkout (a git worktree of an older commit, say) on the
same manifest, so that a figure can be set beside the one before a change. --tmpfs builds every
disk stage in memory (the tmpfs_workspace plugin), against the disk-backed build. Needs root,
like any build.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


def reproducible_cost(records: list[dict], cold: float) -> None:
    """What making the same key give the same bytes costs in a cold build: settling each tree
    (times clamped, machine identity out), reading its entries, and writing each stage's
    changes again (debugfs)."""
    settle = {r["stage"]: r["timings"].get("settle", 0.0) + r["timings"].get("scan", 0.0) for r in records}
    rewrite = {r["stage"]: r["timings"].get("rewrite", 0.0) for r in records}
    total = sum(settle.values()) + sum(rewrite.values())
    per_stage = ", ".join(
        f"{stage} {settle[stage]:.1f}+{rewrite[stage]:.1f}"
        for stage in settle
        if settle[stage] or rewrite[stage]
    )
    print(
        f"reproducible bytes: settle and scan {sum(settle.values()):.1f} s"
        f" + rewrite {sum(rewrite.values()):.1f} s "
        f"= {total:.1f} s, {100 * total / cold:.1f}% of the cold build ({per_stage})"
    )


def in_workspace(source: Path, work: Path, name: str) -> Path:
    text = source.read_text()
    workspace = f"  workspace: {work / 'build'}\n"
    text = (
        text.replace("bootstrapper:\n", "bootstrapper:\n" + workspace, 1)
        if "bootstrapper:\n" in text
        else text + "bootstrapper:\n" + workspace
    )
    target = work / name
    target.write_text(text)
    return target


def debs_only(source: Path, target: Path) -> None:
    """The .debs of a package cache (hard links), without the base systems kept beside them:
    a cold build runs mmdebstrap. apt's lock files are not linked: a shared inode would make an
    apt run in either cache wait for one in the other."""
    for folder in source.iterdir():
        if folder.is_dir() and folder.name != "base-trees":
            shutil.copytree(
                folder, target / folder.name, copy_function=os.link, ignore=shutil.ignore_patterns("lock")
            )


def with_tmpfs_workspace(manifest: Path) -> None:
    data = yaml.safe_load(manifest.read_text())
    data.setdefault("plugins", {})["tmpfs_workspace"] = {}
    manifest.write_text(yaml.safe_dump(data, sort_keys=False))


def downloaded_packages(logs: list[Path]) -> set[str]:
    """Package files fetched, from apt's "Get:" lines and debootstrap's "Retrieving" lines."""
    fetched = set()
    for log in logs:
        for line in log.read_text(errors="replace").splitlines():
            words = line.split()
            if "Get:" in line and line.rstrip().endswith("B]") and len(words) >= 9 and "/" in words[-7]:
                fetched.add(f"{words[-5]}_{words[-3]}")  # name_version
            elif "I: Retrieving " in line and not line.rstrip().endswith(("Release", "Packages")):
                fetched.add(f"{words[-2]}_{words[-1]}")
    return fetched


def build(manifest: Path, cache: Path, env: dict[str, str], extra: list[str], repo: Path = REPO) -> float:
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "vzstages", "--cache", str(cache), "build", "--force", *extra, str(manifest)],
        cwd=repo,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.monotonic() - started


def allocated(path: Path) -> int:
    return path.stat().st_blocks * 512


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("manifest", nargs="?", default=str(REPO / "manifests/kvm.yml"))
    parser.add_argument("--keep-packages", action="store_true", help="reuse VZSTAGES_PACKAGE_CACHE if set")
    parser.add_argument(
        "--second",
        default=str(REPO / "manifests/virtualbox.yml"),
        help="a second manifest on the same release, built cold after the first (none: skip)",
    )
    parser.add_argument("--no-publish", action="store_true", help="build without the publish stage")
    parser.add_argument("--repo", default=str(REPO), help="the vzstages checkout to run")
    parser.add_argument("--tmpfs", action="store_true", help="disk stages in memory (tmpfs_workspace)")
    args = parser.parse_args()
    extra = ["--no-publish"] if args.no_publish else []
    repo = Path(args.repo).resolve()

    work = Path(tempfile.mkdtemp(prefix="vzstages-bench-"))
    env = dict(os.environ)
    if args.keep_packages and os.environ.get("VZSTAGES_PACKAGE_CACHE"):
        debs_only(Path(os.environ["VZSTAGES_PACKAGE_CACHE"]), work / "debs")
    env["VZSTAGES_PACKAGE_CACHE"] = str(work / "debs")
    manifest = in_workspace(Path(args.manifest), work, "bench.yml")
    if args.tmpfs:
        with_tmpfs_workspace(manifest)
    cache = work / "cache"
    try:
        cold = build(manifest, cache, env, extra, repo)
        records = [json.loads(p.read_text()) for p in (cache / "stages").glob("*.json")]
        order = ["volume", "os", "packages", "system", "user", "cleanup", "image", "publish"]
        records.sort(key=lambda r: order.index(r["stage"]))
        print(f"manifest: {args.manifest}{' in memory' if args.tmpfs else ''}; vzstages from {repo}")
        print(f"cold build: {cold:.1f} s wall")
        for record in records:
            print(f"  {record['stage']:<9}{record['timings']['total']:7.1f} s")
        reproducible_cost(records, cold)
        checkpoints = sum(allocated(p) for p in (cache / "stages").glob("*.qcow2"))
        images = (".qcow2", ".raw", ".vmdk", ".vdi", ".vhd", ".gz", ".box")
        image = next(p for p in (work / "build").iterdir() if p.is_file() and p.suffix in images)
        print(
            f"checkpoints of the build: {checkpoints / 2**20:.0f} MiB allocated; final image {image.name}: "
            f"{allocated(image) / 2**20:.0f} MiB allocated; ratio {checkpoints / allocated(image):.2f}"
        )

        noop = build(manifest, cache, env, extra, repo)
        print(f"rerun, nothing changed: {noop:.2f} s wall")

        hostname = "bench-late-change"
        edited = manifest.read_text()
        if "hostname:" in edited:
            lines = [
                ("  hostname: " + hostname) if line.strip().startswith("hostname:") else line
                for line in edited.splitlines()
            ]
            manifest.write_text("\n".join(lines) + "\n")
        else:
            manifest.write_text(edited.replace("system:\n", f"system:\n  hostname: {hostname}\n", 1))
        late = build(manifest, cache, env, extra, repo)
        print(f"rerun after a hostname change: {late:.1f} s wall ({100 * late / cold:.1f}% of cold)")

        if args.second == "none":
            return 0
        logs = work / "build" / "logs"
        first_logs = sorted(logs.glob("*.log"))
        first = downloaded_packages(first_logs)
        second_time = build(
            in_workspace(Path(args.second), work, "second.yml"), work / "cache2", env, extra, repo
        )
        second = downloaded_packages(sorted(set(logs.glob("*.log")) - set(first_logs)))
        print(
            f"second cold build ({Path(args.second).name}, fresh checkpoints, same package cache): "
            f"{second_time:.1f} s wall; packages downloaded: first build {len(first)}, "
            f"second build {len(second)}, downloaded twice {len(first & second)}"
        )

    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
