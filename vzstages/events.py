"""`vzstages build --json`: the build's stdout is a stream of JSON events, one a line, for a CI
system to consume (as Packer's `-machine-readable`): stage started and finished (built, pulled
or reused, with seconds), pulled, pushed, warning, failed, summary and, last, one `result` per
image with its result file's content. Human progress still goes to stderr.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any

EVENTS_ENV = "VZSTAGES_EVENTS"


def enabled() -> bool:
    return os.environ.get(EVENTS_ENV) == "json"


def emit(event: str, **fields: Any) -> None:
    line = json.dumps({"event": event, "time": round(time.time(), 3), **fields}, sort_keys=True, default=str)
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class EventHandler(logging.Handler):
    """Turns the progress records that carry structure into events: a stage's start
    (`extra={"stage": (label, "start", expected)}`), a transfer (`extra={"event": {...}}`), and
    any warning."""

    def emit(self, record: logging.LogRecord) -> None:
        stage = getattr(record, "stage", None)
        transfer = getattr(record, "event", None)
        try:
            if stage is not None:
                label, what, seconds = stage
                if what == "start":  # its end is the reporter's (built, pulled or reused)
                    emit("stage_started", stage=label, expected_seconds=seconds)
            elif isinstance(transfer, dict):
                emit(**transfer)
            elif record.levelno >= logging.WARNING:
                emit("warning", message=record.getMessage().removeprefix("warning: "))
        except (OSError, ValueError):
            self.setLevel(logging.CRITICAL + 1)  # stdout is gone; the build goes on


def setup() -> None:
    os.environ[EVENTS_ENV] = "json"  # the reporter (run by doit) reads it too
    logging.getLogger("vzstages").addHandler(EventHandler(logging.DEBUG))
