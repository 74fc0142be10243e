"""Order tasks: by phase, then by their edges, ties broken by name. Deterministic."""

from __future__ import annotations

import heapq
from collections.abc import Iterable

from ..errors import GraphError
from .phases import CONTEXT_PHASES
from .task import Task


def edges(tasks: Iterable[type[Task]]) -> set[tuple[type[Task], type[Task]]]:
    """(before, after) pairs between tasks in the set; edges to absent tasks are ignored."""
    present = set(tasks)

    def matching(named: type[Task]) -> set[type[Task]]:
        # An edge to a task also binds its subclasses: a provider's variant of a common task
        # keeps the common task's place in the order.
        return {t for t in present if issubclass(t, named)}

    found = set()
    for task in present:
        for p in task.predecessors:
            found |= {(m, task) for m in matching(p) if m is not task}
        for s in task.successors:
            found |= {(task, m) for m in matching(s) if m is not task}
    return found


def order(tasks: Iterable[type[Task]]) -> list[type[Task]]:
    tasks = list(tasks)
    for task in tasks:
        if task.phase in CONTEXT_PHASES:
            raise GraphError(
                f"task {task.name()} is in phase {task.phase.label}, which is handled by "
                "vzstages itself (manifest validation or the mount context)"
            )
    graph = edges(tasks)
    backwards = sorted(
        f"{a.name()} ({a.phase.label}) -> {b.name()} ({b.phase.label})" for a, b in graph if a.phase > b.phase
    )
    if backwards:
        raise GraphError("task edges against phase order:\n  " + "\n  ".join(backwards))

    incoming = {t: 0 for t in tasks}
    after: dict[type[Task], list[type[Task]]] = {t: [] for t in tasks}
    for a, b in graph:
        incoming[b] += 1
        after[a].append(b)
    ready = [(t.phase, t.name(), t) for t in tasks if incoming[t] == 0]
    heapq.heapify(ready)
    result = []
    while ready:
        _, _, task = heapq.heappop(ready)
        result.append(task)
        for nxt in after[task]:
            incoming[nxt] -= 1
            if incoming[nxt] == 0:
                heapq.heappush(ready, (nxt.phase, nxt.name(), nxt))
    if len(result) < len(tasks):
        raise GraphError("task cycle: " + " -> ".join(t.name() for t in _find_cycle(incoming, after)))
    return result


def _find_cycle(
    incoming: dict[type[Task], int], after: dict[type[Task], list[type[Task]]]
) -> list[type[Task]]:
    # Every task left unordered still waits on an unordered predecessor, so walking predecessors
    # from any of them must come back to a task already seen: that loop is a cycle.
    stuck = {t for t, n in incoming.items() if n > 0}
    before = {t: sorted((a for a in stuck if t in after[a]), key=lambda x: x.name()) for t in stuck}
    node = min(stuck, key=lambda t: t.name())
    path: list[type[Task]] = []
    while node not in path:
        path.append(node)
        node = before[node][0]
    cycle = path[path.index(node) :]
    cycle.reverse()
    return [*cycle, cycle[0]]
