"""vzstages' doit commands: `doit info STAGE` with a clear error for a stage the plan does not
have, `doit dumpdb` for this cache's sqlite database, and `doit strace` said to be unsupported."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any

from doit.cmd_base import Command, DoitCmdBase
from doit.cmd_info import Info
from doit.exceptions import InvalidCommand


class StageInfo(Info):
    def _execute(self, pos_args: list[str], hide_status: bool = False) -> Any:
        names = [t.name for t in self.task_list]
        if len(pos_args) == 1 and pos_args[0] not in names:
            raise InvalidCommand(f"no stage {pos_args[0]!r} in this plan (stages: {' '.join(names)})")
        return super()._execute(pos_args, hide_status)


class DumpDB(DoitCmdBase):
    """doit's own dumpdb reads dbm files; this cache keeps doit's state in sqlite."""

    doc_purpose = "dump doit's dependency database (vzstages keeps it in sqlite in the cache)"
    doc_usage = ""
    doc_description = None
    cmd_options = ()

    def _execute(self, dep_file: str) -> int:
        self.dep_manager.close()
        path = Path(dep_file)
        if not path.is_file():
            print(f"{path}: no dependency database yet (nothing was built with this cache)")
            return 0
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            try:
                rows = db.execute("select task_id, task_data from doit order by task_id").fetchall()
            except sqlite3.DatabaseError as exc:
                raise InvalidCommand(f"{path}: not doit's database ({exc})") from None
        for task_id, data in rows:
            print(f"{task_id} -> {data}")
        return 0


class NoStrace(Command):
    """strace would trace doit's own process: a stage's files are written by commands in a
    chroot, which the build log lists, one line each."""

    doc_purpose = "not supported: a stage's commands are in its build log (build/logs/)"
    doc_usage = ""
    doc_description = None

    def execute(self, opt_values: dict[str, Any], pos_args: list[str]) -> int:
        raise InvalidCommand(
            "doit strace is not supported by vzstages: every command a stage runs, with its "
            "output, is in the build's log (build/logs/), and `doit info STAGE` shows its tasks"
        )
