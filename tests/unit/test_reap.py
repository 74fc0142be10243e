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
