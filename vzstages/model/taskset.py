"""The set of tasks a manifest asks for, before ordering."""

from __future__ import annotations

from collections.abc import Iterator

from .task import Task


class TaskSet:
    def __init__(self) -> None:
        self._tasks: set[type[Task]] = set()

    def add(self, *tasks: type[Task]) -> None:
        self._tasks.update(tasks)

    def remove(self, *tasks: type[Task]) -> None:
        """Remove tasks another component made unnecessary; removing an absent task is fine."""
        self._tasks.difference_update(tasks)

    def __contains__(self, task: object) -> bool:
        return task in self._tasks

    def __iter__(self) -> Iterator[type[Task]]:
        return iter(sorted(self._tasks, key=lambda t: t.name()))

    def __len__(self) -> int:
        return len(self._tasks)
