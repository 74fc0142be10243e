"""Task ordering: phase, then edges, ties by name; cycles and backward edges are named errors."""

from __future__ import annotations

import pytest

from vzstages.errors import GraphError
from vzstages.model.graph import order
from vzstages.model.phases import Phase
from vzstages.model.task import Task


def make(name: str, phase: Phase, **attrs: object) -> type[Task]:
    return type(name, (Task,), {"phase": phase, "__module__": "tests.graph", **attrs})


def names(tasks: list[type[Task]]) -> list[str]:
    return [t.__name__ for t in tasks]


def test_phase_order_then_name():
    b = make("B", Phase.SYSTEM_MODIFICATION)
    a = make("A", Phase.SYSTEM_MODIFICATION)
    z = make("Z", Phase.OS_INSTALLATION)
    assert names(order([b, a, z])) == ["Z", "A", "B"]


def test_edges_override_names_within_a_phase():
    a = make("A", Phase.SYSTEM_MODIFICATION)
    b = make("B", Phase.SYSTEM_MODIFICATION, successors=(a,))
    c = make("C", Phase.SYSTEM_MODIFICATION, predecessors=(b,))
    assert names(order([a, b, c])) == ["B", "A", "C"]


def test_order_is_deterministic_whatever_the_input_order():
    tasks = [make(n, Phase.USER_MODIFICATION) for n in "QWERTY"]
    assert names(order(tasks)) == names(order(list(reversed(tasks)))) == sorted("QWERTY")


def test_edges_to_absent_tasks_are_ignored():
    absent = make("Absent", Phase.SYSTEM_MODIFICATION)
    a = make("A", Phase.SYSTEM_MODIFICATION, predecessors=(absent,))
    assert names(order([a])) == ["A"]


def test_edge_to_a_base_task_binds_its_subclass():
    base = make("Kernel", Phase.PACKAGE_INSTALLATION)
    variant = type("CloudKernel", (base,), {"__module__": "tests.graph"})
    early = make("ZZ", Phase.PACKAGE_INSTALLATION, successors=(base,))
    assert names(order([variant, early])) == ["ZZ", "CloudKernel"]


def test_cycle_names_the_tasks():
    a = make("A", Phase.SYSTEM_MODIFICATION)
    b = make("B", Phase.SYSTEM_MODIFICATION, predecessors=(a,))
    c = make("C", Phase.SYSTEM_MODIFICATION, predecessors=(b,))
    a.predecessors = (c,)
    free = make("Free", Phase.SYSTEM_MODIFICATION)
    with pytest.raises(GraphError) as caught:
        order([a, b, c, free])
    message = str(caught.value)
    assert message.startswith("task cycle: ")
    assert all(f"tests.graph.{n}" in message for n in "ABC")
    assert "Free" not in message


def test_edge_against_phase_order_is_an_error():
    late = make("Late", Phase.SYSTEM_CLEANING)
    early = make("Early", Phase.OS_INSTALLATION, predecessors=(late,))
    with pytest.raises(GraphError) as caught:
        order([late, early])
    assert "tests.graph.Late (system_cleaning) -> tests.graph.Early (os_installation)" in str(caught.value)


def test_context_phases_take_no_tasks():
    with pytest.raises(GraphError, match="volume_mounting"):
        order([make("Mount", Phase.VOLUME_MOUNTING)])
