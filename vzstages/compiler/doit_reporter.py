"""doit's console output for stages: the runner reports progress itself, so this reporter says
which stages were up to date, and sums up the run: what was built, pulled from the remote cache or
reused, how long each stage took and the time the cache saved ("nothing to do" when nothing ran),
and every image the run produced."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from doit.reporter import ConsoleReporter

from .. import events
from ..bounded import MAX_RESULT_BYTES, read_regular
from ..cache.record import load_json
from ..events import emit
from ..results import write_result
from ..units import human_size


class StageReporter(ConsoleReporter):
    desc = "vzstages: one line per stage, and a summary"

    def __init__(self, outstream: Any, options: Any):
        super().__init__(outstream, options)
        self.built: list[str] = []
        self.pulled: list[str] = []
        self.reused: list[str] = []
        self.took: dict[str, float] = {}
        self.saved = 0.0
        self.pulled_bytes = 0
        self.started = time.monotonic()
        self.wall_started = time.time()
        self.results: list[Path] = []
        self.images: list[Path] = []
        # What each task makes: named only when this run built, pulled or confirmed that task.
        self.makes: dict[str, tuple[list[Path], list[Path]]] = {}
        self.outcome: dict[str, tuple[str, float]] = {}  # task -> (built|pulled|reused, seconds)
        self.result_of: dict[str, dict[str, Any]] = {}  # image task -> what its result file names
        self.happened: list[str] = []
        self.json = events.enabled()  # `--json`: stdout is a stream of events (events.py)

    def initialize(self, tasks: Any, selected_tasks: Any) -> None:
        super().initialize(tasks, selected_tasks)
        self.started = time.monotonic()
        for name, task in tasks.items():
            meta = task.meta or {}
            results = [Path(t) for t in task.targets if t.endswith(".json")]
            publishes = name.split(":")[-1] == "publish"
            self.makes[name] = ([Path(p) for p in meta.get("images", [])], results if publishes else [])
            if meta.get("result"):
                self.result_of[name] = meta["result"]

    def _happened(self, task: Any) -> None:
        self.happened.append(task.name)
        images, results = self.makes.get(task.name, ([], []))
        self.images += images
        self.results += results

    def execute_task(self, task: Any) -> None:
        pass  # the stage runner reports its own progress

    def add_success(self, task: Any) -> None:
        self._happened(task)
        values = task.values or {}
        status = values.get("status", "built")
        self.outcome[task.name] = (
            "reused" if status == "cached" else status,
            float(values.get("seconds", 0.0)),
        )
        if self.json:
            emit(
                "stage_finished",
                stage=task.name,
                status=self.outcome[task.name][0],
                seconds=values.get("seconds"),
            )
        if status == "built":
            self.built.append(task.name)
            self.took[task.name] = float(values.get("seconds", 0.0))
        else:
            (self.pulled if status == "pulled" else self.reused).append(task.name)
            self.saved += float(values.get("saved", 0.0))
            self.pulled_bytes += int(values.get("pulled_bytes", 0))

    def add_failure(self, task: Any, fail: Any) -> None:
        # The stage action returns TaskFailed with one line of cause and the log's path; doit's
        # own errors (TaskError) would carry a traceback, which goes to no one's console.
        self.failures.append({"task": task, "exception": fail})
        if self.json:
            emit("stage_failed", stage=task.name)
        else:
            self.write(f"{task.name:<8} FAILED\n")

    def skip_uptodate(self, task: Any) -> None:
        self._happened(task)
        self.outcome[task.name] = ("reused", 0.0)
        self.reused.append(task.name)
        self.saved += float((task.meta or {}).get("seconds") or 0.0)
        if self.json:
            emit("stage_finished", stage=task.name, status="reused", seconds=0.0)
        else:
            self.write(f"{task.name:<8} up to date\n")

    def _write_result(self, name: str) -> Path:
        result = self.result_of[name]
        stages = []
        for stage, key, task_name in result["chain"]:
            status, seconds = self.outcome.get(task_name, ("reused", 0.0))
            stages.append({"stage": stage, "key": key, "status": status, "seconds": seconds})
        return write_result({**result, "started": self.wall_started}, self.makes[name][0], stages)

    def complete_run(self) -> None:
        seconds = time.monotonic() - self.started
        errors = [str(getattr(f["exception"], "message", f["exception"])).rstrip() for f in self.failures]
        errors += ["\n".join(self.runtime_errors)] if self.runtime_errors else []
        if self.json:
            self._complete_events(seconds, errors)
            return
        for error in errors:
            self.write(f"error: {error}\n")
        if errors:
            return
        reused = len(self.reused)
        if not self.built and not self.pulled:
            self.write(f"nothing to do: all {reused} stages are up to date ({seconds:.2f}s)\n")
        else:
            took = ", ".join(f"{name} {self.took[name]:.1f}s" for name in self.built)
            parts = [
                f"built {', '.join(self.built)} in {seconds:.1f}s"
                if self.built
                else f"done in {seconds:.1f}s"
            ]
            if self.pulled:
                parts.append(f"pulled {', '.join(self.pulled)} ({human_size(self.pulled_bytes)})")
            parts.append(f"reused {reused} stages")
            self.write("; ".join(parts) + "\n")
            if took:
                self.write(f"stage times: {took}\n")
        if self.saved >= 1:
            self.write(f"the cache saved about {self.saved:.0f}s of building\n")
        for image in self.images:
            if image.exists():
                self.write(f"image: {image}\n")
        for name in self.happened:
            if name in self.result_of:
                self.write(f"result: {self._write_result(name)}\n")
        # Last, one JSON line per published image (the AMI id...), for scripts: `| tail -1 | jq`.
        for result in self.results:
            if result.exists():
                self.write(result.read_text())

    def _complete_events(self, seconds: float, errors: list[str]) -> None:
        for error in errors:
            emit("error", message=error)
        if errors:
            return
        emit(
            "summary",
            built=self.built,
            pulled=self.pulled,
            reused=self.reused,
            seconds=round(seconds, 3),
            pulled_bytes=self.pulled_bytes,
        )
        for name in self.happened:
            if name in self.result_of:
                path = self._write_result(name)
                emit("result", path=str(path), **load_json(read_regular(path, MAX_RESULT_BYTES)))
