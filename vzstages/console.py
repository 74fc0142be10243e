"""What a build shows on the console: progress lines, and on a terminal a live status line.

Progress goes through the "vzstages.progress" logger as plain lines (what a CI log keeps). On a
terminal, a status line under them is redrawn every second: the stage running, its elapsed time
against the time it took last time, and the last line the command it runs printed (debootstrap's
"Unpacking ...", apt's "Setting up ...", qemu-img's percentage), so a long step is never a
silent wait. Without a terminal (a CI log), a heartbeat line says the same at least every
HEARTBEAT seconds while a stage runs and nothing else was printed. Stages say when they start and
end with `extra={"stage": ...}` on their lines.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sys
import threading
import time
from dataclasses import dataclass
from typing import TextIO

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
HEARTBEAT = 30.0


@dataclass
class _Running:
    label: str
    started: float
    expected: float | None
    last_output: str = ""


class ConsoleHandler(logging.StreamHandler[TextIO]):
    """Prints progress records; on a terminal, keeps a status line for each running stage."""

    def __init__(self, stream: TextIO | None = None, verbose: bool = False, live: bool | None = None):
        super().__init__(stream or sys.stderr)
        self.verbose = verbose
        self.live = self.stream.isatty() if live is None else live
        self.running: dict[str, _Running] = {}
        self.shown = False
        self.lock_line = threading.Lock()
        self.printed = time.monotonic()
        if self.live:
            threading.Thread(target=self._tick, daemon=True, name="vzstages-status").start()
        else:
            threading.Thread(target=self._heartbeat, daemon=True, name="vzstages-heartbeat").start()

    def emit(self, record: logging.LogRecord) -> None:
        stage = getattr(record, "stage", None)
        if stage is not None:
            label, event, expected = stage
            if event == "start":
                self.running[label] = _Running(label, time.monotonic(), expected)
            else:
                self.running.pop(label, None)
        if record.name == "vzstages.host" and record.levelno == logging.DEBUG and self.running:
            line = _CONTROL.sub(" ", record.getMessage()).strip()
            if line and not line.startswith("$"):
                for running in self.running.values():
                    running.last_output = line
        if not (self.verbose or record.name == "vzstages.progress" or record.levelno >= logging.WARNING):
            return
        with self.lock_line:
            try:
                self._clear()
                super().emit(record)
                self.printed = time.monotonic()
                self._draw()
            except OSError:
                self._lost()

    def _heartbeat(self) -> None:
        """A log with no terminal: say what is running when nothing was printed for a while."""
        while not self.live and self.level <= logging.CRITICAL:
            time.sleep(min(HEARTBEAT, 5.0) / 5)
            with self.lock_line:
                if not self.running or time.monotonic() - self.printed < HEARTBEAT:
                    continue
                try:
                    for running in self.running.values():
                        elapsed = time.monotonic() - running.started
                        last = f": {running.last_output}" if running.last_output else ""
                        self.stream.write(f"  {running.label} still running after {elapsed:.0f}s{last}\n")
                    self.stream.flush()
                    self.printed = time.monotonic()
                except OSError:
                    self._lost()

    def _tick(self) -> None:
        while self.live:
            time.sleep(1)
            with self.lock_line:
                try:
                    self._clear()
                    self._draw()
                except OSError:
                    self._lost()

    def _lost(self) -> None:
        # The console went away (a closed pipe, a hung-up terminal): the build goes on, and
        # cleans up, with its log file as the only record.
        self.live = False
        self.shown = False
        self.setLevel(logging.CRITICAL + 1)

    def _clear(self) -> None:
        if self.shown:
            self.stream.write("\r\x1b[K")
            self.shown = False

    def _draw(self) -> None:
        if not self.live or not self.running:
            return
        width = shutil.get_terminal_size((100, 20)).columns - 1
        parts = []
        for running in self.running.values():
            elapsed = time.monotonic() - running.started
            expected = f" of ~{running.expected:.0f}s" if running.expected else ""
            parts.append(f"{running.label} {elapsed:.0f}s{expected}")
        last = next(iter(self.running.values())).last_output
        text = " | ".join(parts) + (f"  {last}" if last else "")
        self.stream.write(text[:width])
        self.stream.flush()
        self.shown = True


def setup(verbose: bool = False) -> None:
    """The console handler on the "vzstages" logger (once); debug records reach it for the
    status line, and it prints what a user should see."""
    root = logging.getLogger("vzstages")
    for handler in root.handlers:
        if isinstance(handler, ConsoleHandler):
            handler.verbose = handler.verbose or verbose
            return
    live = None if os.environ.get("VZSTAGES_PROGRESS") != "plain" else False
    handler = ConsoleHandler(verbose=verbose, live=live)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
