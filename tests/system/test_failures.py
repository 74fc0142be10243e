"""A failing or interrupted build leaves nothing attached and keeps every completed checkpoint."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from vzstages.build import load_plan

from ..conftest import REPO
from .conftest import nothing_left, start_build, vzstages, wait_until_mounted, with_workspace

pytestmark = pytest.mark.system


def completed(manifest: Path, cache: Path) -> list[str]:
    plan = load_plan(manifest, cache)
    return [s.name for s in plan.stages if plan.store.lookup(s.name, s.key, disk=s.disk)]


def test_task_failing_mid_stage_leaves_nothing_and_keeps_checkpoints(cache, workspace, tmp_path):
    manifest = with_workspace(
        REPO / "manifests/kvm.yml",
        workspace,
        tmp_path / "broken.yml",
        edit={"    - less\n": "    - less\n    - vzstages-no-such-package\n"},
    )
    out = vzstages("build", "--shell-on-error", str(manifest), cache=cache, check=False)
    assert out.returncode != 0
    assert "vzstages-no-such-package" in out.stdout + out.stderr
    # No terminal here: the line that opens the tree the failed stage started from.
    line = f"The tree it started from: vzstages --cache {cache} shell {manifest} os"
    assert "packages failed; no terminal for a shell." in out.stderr and line in out.stderr, out.stderr
    nothing_left(cache)
    assert completed(manifest, cache) == ["volume", "os"]
    plan = load_plan(manifest, cache)
    assert not plan.checkpoint(plan.stage("packages")).exists()


def test_sigterm_mid_stage_unwinds_and_the_next_run_resumes(cache, workspace, tmp_path):
    manifest = with_workspace(
        REPO / "manifests/kvm.yml",
        workspace,
        tmp_path / "term.yml",
        edit={"    - less\n": "    - less\n    - file\n"},
    )
    proc = start_build(manifest, cache)
    # The package list changed: wait until the packages stage has its disk mounted, then interrupt it.
    wait_until_mounted(cache, timeout=900)
    plan = load_plan(manifest, cache)
    running = next(s.name for s in plan.stages if not plan.store.lookup(s.name, s.key, disk=s.disk))
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0, output
    nothing_left(cache)
    assert running not in completed(manifest, cache)
    done_before = completed(manifest, cache)
    rerun = vzstages("build", str(manifest), cache=cache)
    for stage in done_before:
        assert f"{stage:<8} up to date" in rerun.stdout or f"{stage:<8} cached" in rerun.stderr
    nothing_left(cache)


def test_sigterm_during_a_command_with_the_console_gone_stops_it_and_unwinds(cache, workspace, tmp_path):
    """The CI runner's log collector dies, then the job is cancelled while mmdebstrap runs: the
    build must neither die of SIGPIPE halfway through its cleanup nor unmount under mmdebstrap."""
    manifest = with_workspace(
        REPO / "manifests/kvm.yml",
        workspace,
        tmp_path / "term-os.yml",
        edit={"  variant: minbase\n": "  variant: minbase\n  include_packages: [file]\n"},
    )
    proc = start_build(manifest, cache)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and not _bootstrap_running(cache):
        time.sleep(0.2)
    assert _bootstrap_running(cache), "the os stage never started mmdebstrap"
    assert proc.stdout is not None
    proc.stdout.close()  # the console is gone: every write the build makes now fails
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    assert proc.returncode != 0
    assert not _bootstrap_running(cache), "mmdebstrap outlived the build"
    nothing_left(cache)
    assert completed(manifest, cache) == ["volume"]


def _bootstrap_running(cache: Path) -> bool:
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if any(b"mmdebstrap" in a for a in argv[:2]) and any(str(cache).encode() in a for a in argv):
            return True
    return False
