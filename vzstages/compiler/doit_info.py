"""`doit info STAGE`, with a clear error for a stage the plan does not have."""

from __future__ import annotations

from typing import Any

from doit.cmd_info import Info
from doit.exceptions import InvalidCommand


class StageInfo(Info):
    def _execute(self, pos_args: list[str], hide_status: bool = False) -> Any:
        names = [t.name for t in self.task_list]
        if len(pos_args) == 1 and pos_args[0] not in names:
            raise InvalidCommand(f"no stage {pos_args[0]!r} in this plan (stages: {' '.join(names)})")
        return super()._execute(pos_args, hide_status)
