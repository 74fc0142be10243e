"""doit's dependency database, made durable per task.

doit's own backends write everything at the end of the run, so a build killed with SIGKILL would
forget the stages it finished. This one commits each task's record as soon as doit saves it.
"""

from __future__ import annotations

from typing import Any

from doit.dependency import SqliteDB


class DurableSqliteDB(SqliteDB):
    desc = "sqlite3, committed after every task (survives SIGKILL)"

    def _sqlite3(self, name: str) -> Any:
        conn = super()._sqlite3(name)
        conn.execute("PRAGMA busy_timeout = 60000")  # two builds may share one cache
        return conn

    def set(self, task_id: str, dependency: str, value: Any) -> None:
        super().set(task_id, dependency, value)
        # doit saves a task's values one by one and "deps:" last (Dependency.save_success).
        if dependency == "deps:":
            self._conn.execute(
                "insert or replace into doit values (?,?)", (task_id, self.codec.encode(self._cache[task_id]))
            )
            self._conn.commit()
            self._dirty.discard(task_id)
