"""Identify a build process by pid and start time, so a reused pid is never mistaken for it."""

from __future__ import annotations

import os
from pathlib import Path


def _start_time(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def run_id(pid: int | None = None) -> str:
    pid = pid or os.getpid()
    return f"{pid}-{_start_time(pid)}"


def is_alive(run: str) -> bool:
    pid_text, _, start = run.partition("-")
    return pid_text.isdigit() and _start_time(int(pid_text)) == start
