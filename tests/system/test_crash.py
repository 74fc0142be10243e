"""A crash at any instant: SIGKILL at random moments of builds, pushes and pulls (no unwinding at
all: power lost) leaves a cache that verifies, and the next run finishes with a checked image.
bench/crash.py does the same a hundred times and more, with its figures."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ..conftest import REPO
from .conftest import copy_stages, vzstages, with_workspace

pytestmark = pytest.mark.system


def killed_at_random(argv: list[str], cache: Path, rng: random.Random, longest: float) -> float:
    """Start `vzstages ARGV` and SIGKILL it (its whole process group) after a random delay."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "vzstages", "--cache", str(cache), *argv],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    delay = rng.uniform(0.2, longest)
    time.sleep(delay)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    return delay


def test_sigkill_at_random_moments_never_leaves_a_cache_that_does_not_verify(
    cache, workspace, tmp_path, remote
):
    rng = random.Random(20261129)
    base = with_workspace(REPO / "manifests/kvm.yml", workspace, tmp_path / "kvm.yml")
    vzstages("build", str(base), cache=cache)  # the early stages: shared with the other tests
    # A cache of its own holding that chain, so each check reads only what this test made.
    shared, cache = cache, tmp_path / "crash-cache"
    copy_stages(shared, cache, base, ("volume", "os", "packages", "system", "cleanup"))
    for round_ in range(4):
        hostname = f"crash-{round_}"
        manifest = with_workspace(
            REPO / "manifests/kvm.yml",
            workspace,
            tmp_path / f"{hostname}.yml",
            edit={"hostname: vzstages-kvm": f"hostname: {hostname}"},
        )
        # A late change (system, cleanup, image): killed while building, converting or checking.
        killed_at_random(["build", "--force", *remote, str(manifest)], cache, rng, longest=8.0)
        verify = vzstages("cache", "verify", cache=cache, check=False)
        assert verify.returncode == 0, verify.stdout + verify.stderr
        out = vzstages("build", *remote, str(manifest), cache=cache)
        assert "every filesystem clean" in out.stdout + out.stderr or "up to date" in out.stdout
    # A push and a pull killed midway leave the remote and a second cache usable.
    other = tmp_path / "other-cache"
    killed_at_random(["cache", "push", *remote, str(base)], cache, rng, longest=3.0)
    killed_at_random(["cache", "pull", *remote, str(base)], other, rng, longest=3.0)
    verify = vzstages("cache", "verify", cache=other, check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    vzstages("cache", "push", *remote, str(base), cache=cache, check=False)
    out = vzstages("build", *remote, str(base), cache=other)
    assert "every filesystem clean" in out.stdout + out.stderr
    vzstages("cache", "verify", cache=other)
