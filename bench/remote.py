#!/usr/bin/env python3
"""The shared remote cache and many images in one build, measured on this machine, with a moto S3
server on 127.0.0.1 as the remote (real HTTP, real boto3):

    pull       machine A builds manifests/kvm.yml cold and pushes; machine B (an empty checkpoint
               cache) builds it from the warm remote: B's time as a fraction of A's cold build,
               and the bytes pulled against the checkpoints' size
    change     B changes the hostname: what is built and what is pushed (the changed stages only)
    matrix     four manifests of one release (kvm.yml with four hostnames) built in one invocation
               with -n 2, against the same four built one after another; both from an empty
               checkpoint cache: total time and how often os and packages were built

    bench/remote.py [--only pull,change,matrix]

Packages come from the shared .deb cache (VZSTAGES_PACKAGE_CACHE, filled if empty), so the cold
build is not a download test. Needs root, like any build.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from build_times import in_workspace  # noqa: E402  (bench/, this script's folder)

from vzstages.units import human_size  # noqa: E402

SUMMARY = re.compile(r"remote cache: pulled (\d+) \(([^)]*)\), pushed (\d+) \(([^)]*)\)")


@contextmanager
def moto_server() -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or "moto_server"
    proc = subprocess.Popen(
        [server, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2).close()
                break
            except OSError:
                time.sleep(0.2)
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def manifest(work: Path, name: str, hostname: str = "vzstages-kvm") -> Path:
    """kvm.yml writing into work/build, with its own image name and hostname."""
    path = in_workspace(REPO / "manifests/kvm.yml", work, f"{name}.yml")
    text = path.read_text().replace("hostname: vzstages-kvm", f"hostname: {hostname}")
    path.write_text(text.replace("{system.architecture}-kvm", "{system.architecture}-" + name))
    return path


def vzstages(cache: Path, *args: str) -> tuple[float, str]:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "vzstages", "--cache", str(cache), "build", "--force", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        sys.exit(f"build failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return seconds, proc.stdout + proc.stderr


def ran(log: str, stage: str) -> int:
    """How many times a stage was built: `os       running` or `a+b:os running` lines."""
    return len(re.findall(rf"^(?:\S+:)?{stage}\s+running", log, re.MULTILINE))


def checkpoints_size(cache: Path) -> int:
    return sum(p.stat().st_size for p in (cache / "stages").glob("*.qcow2"))


def remote_args(endpoint: str, bucket: str) -> list[str]:
    return ["--remote", f"s3://{bucket}/bench", "--remote-endpoint", endpoint]


def bench_pull_and_change(work: Path, endpoint: str, only: set[str]) -> None:
    import boto3

    bucket = "vzstages-bench"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
    remote = remote_args(endpoint, bucket)
    cache_a, cache_b = work / "cache-a", work / "cache-b"
    (work / "a").mkdir()
    a = manifest(work / "a", "kvm")
    cold, log = vzstages(cache_a, *remote, str(a))
    pushed = SUMMARY.search(log)
    print(f"cold build, pushing   {cold:7.1f} s   ({pushed.group(0) if pushed else 'no remote summary'})")
    size = checkpoints_size(cache_a)
    (work / "b").mkdir()
    b = manifest(work / "b", "kvm")
    warm, log = vzstages(cache_b, *remote, str(b))
    pulled = SUMMARY.search(log)
    built = [s for s in ("volume", "os", "packages", "system", "cleanup", "image") if ran(log, s)]
    print(
        f"fresh cache, warm remote {warm:5.1f} s = {warm / cold:.0%} of the cold build (target 10%); "
        f"built: {', '.join(built) or 'nothing'}"
    )
    for line in log.splitlines():
        if re.match(r"^\S+\s+(pulled|done in|cached)|^stage times", line):
            print(f"    {line.strip()}")
    if pulled:
        got = f"{pulled.group(1)} checkpoints, {pulled.group(2)}"
        print(f"  pulled {got}; the checkpoints' size on disk {human_size(size)}")
    if "change" not in only:
        return
    b2 = manifest(work / "b", "kvm", hostname="changed")
    before = set((cache_b / "stages").glob("*.qcow2"))
    seconds, log = vzstages(cache_b, *remote, str(b2))
    summary = SUMMARY.search(log)
    built = [s for s in ("volume", "os", "packages", "system", "cleanup", "image") if ran(log, s)]
    changed = sum(p.stat().st_size for p in set((cache_b / "stages").glob("*.qcow2")) - before)
    print(
        f"hostname change on B    {seconds:5.1f} s; built {', '.join(built)}; "
        f"{summary.group(0) if summary else 'no remote summary'}; "
        f"the rebuilt checkpoints' size {human_size(changed)}"
    )


def bench_matrix(work: Path) -> None:
    names = ("north", "south", "east", "west")
    together = work / "together"
    together.mkdir()
    manifests = [str(manifest(together, n, hostname=n)) for n in names]
    seconds, log = vzstages(together / "cache", "-n", "2", *manifests)
    print(
        f"four manifests, one build -n 2   {seconds:6.1f} s; os built {ran(log, 'os')}x, "
        f"packages {ran(log, 'packages')}x"
    )
    apart = work / "apart"
    apart.mkdir()
    total, os_runs, package_runs = 0.0, 0, 0
    for name in names:
        seconds, log = vzstages(apart / "cache", str(manifest(apart, name, hostname=name)))
        total += seconds
        os_runs += ran(log, "os")
        package_runs += ran(log, "packages")
    print(f"the same, one after another      {total:6.1f} s; os built {os_runs}x, packages {package_runs}x")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", default="pull,change,matrix", help="a subset of: pull,change,matrix")
    args = parser.parse_args()
    only = set(args.only.split(","))
    if os.geteuid() != 0:
        sys.exit("bench/remote.py builds images: run it as root")
    os.environ.setdefault("VZSTAGES_PACKAGE_CACHE", "/var/cache/vzstages-debs")
    for name, value in (("AWS_ACCESS_KEY_ID", "bench"), ("AWS_SECRET_ACCESS_KEY", "bench")):
        os.environ[name] = value
    os.environ["AWS_REGION"] = "us-east-1"
    with tempfile.TemporaryDirectory(prefix="vzstages-bench-remote-", dir="/var/tmp") as tmp:
        work = Path(tmp)
        if only & {"pull", "change"}:
            with moto_server() as endpoint:
                bench_pull_and_change(work, endpoint, only)
        if "matrix" in only:
            bench_matrix(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
