"""Reaping a dead run touches only that run's own leftovers: a stale pidfile naming some other
process, or a symlink planted in the runs folder, never makes it signal or delete anything else."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from vzstages.host import Host
from vzstages.volume.runs import reap


class RecordingHost(Host):
    def __init__(self) -> None:
        self.commands: list[list[str]] = []

    def run(self, argv, **kwargs):  # type: ignore[override]
        self.commands.append(list(argv))
        from vzstages.host import Result

        return Result(list(argv), 0, "")


def dead_run(runs: Path) -> Path:
    # pid 1's start time is never 0: a run id no live process has.
    folder = runs / "1-0" / "packages"
    folder.mkdir(parents=True)
    return folder


def test_a_stale_pidfile_naming_another_process_is_not_signalled(tmp_path):
    runs = tmp_path / "runs"
    folder = dead_run(runs)
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        (folder / "qsd.pid").write_text(f"{bystander.pid}\n")
        reap(RecordingHost(), runs, tmp_path / "stages")
        time.sleep(0.2)
        assert bystander.poll() is None, "reaping signalled a process that is not the run's daemon"
    finally:
        bystander.kill()
        bystander.wait()
    assert not (runs / "1-0").exists()


def test_symlinks_in_the_runs_folder_are_never_followed(tmp_path, monkeypatch):
    import vzstages.volume.disk as disk

    signalled: list[tuple[int, int]] = []
    # Were the guard broken, reaping would signal every process whose root is the host's /.
    monkeypatch.setattr(disk.os, "kill", lambda pid, sig: signalled.append((pid, sig)))
    runs = tmp_path / "runs"
    runs.mkdir()
    precious = tmp_path / "precious"
    (precious / "stage").mkdir(parents=True)
    (precious / "stage" / "qsd.pid").write_text("1\n")  # pid 1: init
    (precious / "keep").write_text("keep")
    (runs / "2-0").symlink_to(precious)  # looks like a dead run's folder
    folder = dead_run(runs)
    (folder / "root").symlink_to("/")  # a chroot 'root' that is the host's /
    host = RecordingHost()
    reap(host, runs, tmp_path / "stages")
    assert (precious / "keep").read_text() == "keep"
    assert (precious / "stage" / "qsd.pid").exists()
    assert not any(c[-1] == "/" for c in host.commands)


def test_a_killed_writers_partial_output_goes_when_the_file_is_next_written(tmp_path):
    """SIGKILL in the image conversion left a 900 MB `.NAME.RUN.partial` beside the image, one
    more per kill (bench/crash.py found seven). The next writer of that file removes those whose
    writer is dead, and nothing else."""
    from vzstages.atomic import atomic_output
    from vzstages.runid import run_id

    alive = subprocess.Popen(["sleep", "30"])
    child = subprocess.Popen(["sleep", "30"])
    dead = run_id(child.pid)
    child.kill()
    child.wait()
    final = tmp_path / "image.qcow2"
    left = [
        tmp_path / f".image.qcow2.{dead}.partial",  # a killed build's
        tmp_path / f".image.qcow2.{child.pid}.partial",  # an older vzstages named it by pid alone
    ]
    kept = [
        tmp_path / f".image.qcow2.{run_id(alive.pid)}.partial",  # a writer that still runs
        tmp_path / f".image.qcow2.json.{dead}.partial",  # another file's
        tmp_path / ".image.qcow2.notarun.partial",
    ]
    for path in left + kept:
        path.write_bytes(b"half")
    try:
        with atomic_output(final) as tmp:
            tmp.write_bytes(b"whole")
    finally:
        alive.kill()
        alive.wait()
    assert final.read_bytes() == b"whole"
    assert [p for p in left if p.exists()] == []
    assert [p for p in kept if not p.exists()] == []


def test_the_daemons_a_rewrite_opened_are_found_below_the_stage_folder(tmp_path):
    from vzstages.volume.runs import leftovers

    folder = dead_run(tmp_path / "runs")
    for export in ("parent", "scratch", "out"):
        (folder / export).mkdir()
        (folder / export / "qsd.pid").write_text("1\n")
    (folder / "elsewhere").symlink_to(tmp_path)  # never entered
    (tmp_path / "qsd.pid").write_text("1\n")
    found = leftovers(tmp_path / "runs" / "1-0")["daemons"]
    assert sorted(Path(p).parent.name for p in found) == ["out", "parent", "scratch"]
