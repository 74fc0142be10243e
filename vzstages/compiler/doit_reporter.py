"""doit's console output for stages: the runner reports progress itself, so this reporter only
says which stages were up to date, and sums up the run ("nothing to do" when nothing ran)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from doit.reporter import ConsoleReporter


class StageReporter(ConsoleReporter):
    desc = "vzstages: one line per stage, and a summary"

    def __init__(self, outstream: Any, options: Any):
        super().__init__(outstream, options)
        self.ran: list[str] = []
        self.reused: list[str] = []
        self.uptodate: list[str] = []
        self.started = time.monotonic()
        self.results: list[Path] = []

    def initialize(self, tasks: Any, selected_tasks: Any) -> None:
        super().initialize(tasks, selected_tasks)
        self.started = time.monotonic()
        publish = tasks.get("publish")
        if publish is not None:
            self.results = [Path(t) for t in publish.targets if t.endswith(".json")]

    def execute_task(self, task: Any) -> None:
        pass  # the stage runner reports its own progress

    def add_success(self, task: Any) -> None:
        # The stage action returns {"cached": True} when it found its checkpoint already built
        # (by another manifest sharing the cache, or a run doit did not record).
        (self.reused if task.values.get("cached") else self.ran).append(task.name)

    def add_failure(self, task: Any, fail: Any) -> None:
        # The stage action returns TaskFailed with one line of cause and the log's path; doit's
        # own errors (TaskError) would carry a traceback, which goes to no one's console.
        self.failures.append({"task": task, "exception": fail})
        self.write(f"{task.name:<8} FAILED\n")

    def skip_uptodate(self, task: Any) -> None:
        self.uptodate.append(task.name)
        self.write(f"{task.name:<8} up to date\n")

    def complete_run(self) -> None:
        seconds = time.monotonic() - self.started
        for failure in self.failures:
            message = str(getattr(failure["exception"], "message", failure["exception"])).rstrip()
            self.write(f"error: {message}\n")
        if self.runtime_errors:
            self.write("error: " + "\n".join(self.runtime_errors) + "\n")
        if self.failures or self.runtime_errors:
            return
        reused = len(self.uptodate) + len(self.reused)
        if not self.ran:
            self.write(f"nothing to do: all {reused} stages are up to date ({seconds:.2f}s)\n")
        else:
            self.write(f"built {', '.join(self.ran)} in {seconds:.1f}s; reused {reused} stages\n")
        # Last, one JSON line per published image (the AMI id...), for scripts: `| tail -1 | jq`.
        for result in self.results:
            if result.exists():
                self.write(result.read_text())
