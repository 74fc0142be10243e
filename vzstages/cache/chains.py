"""What listing and collection do to chains of checkpoints, wherever they are kept: one policy for
the local store (manage.py) and the remote cache (remote_manage.py).

A chain is walked from its root, children by age, never deeper than there are stages (a record
naming itself or a descendant as its parent is no chain). Collection deletes only leaves, the
least recently used first: those unused for longer than the age limit, then more until the total
is under the size limit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from .record import STAGE_NAMES

T = TypeVar("T")


@dataclass(frozen=True)
class Link(Generic[T]):
    """One checkpoint as the policy sees it; `item` is the store's own entry."""

    key: str
    parent: str | None
    size: int
    order: float  # children and roots are listed in this order (when it was made)
    used: float  # when it was last used: collection takes the oldest first
    item: T


def walk(links: Sequence[Link[T]]) -> Iterator[tuple[int, Link[T]]]:
    """Every chain from its root (a link whose parent is not here), depth first."""
    keys = {link.key for link in links}
    children: dict[str | None, list[Link[T]]] = {}
    for link in links:
        children.setdefault(link.parent if link.parent in keys else None, []).append(link)

    def below(link: Link[T], depth: int) -> Iterator[tuple[int, Link[T]]]:
        yield depth, link
        if depth < len(STAGE_NAMES):
            for child in sorted(children.get(link.key, []), key=lambda c: c.order):
                yield from below(child, depth + 1)

    for root in sorted(children.get(None, []), key=lambda c: c.order):
        yield from below(root, 0)


def collect(
    links: list[Link[T]],
    now: float,
    max_size: int | None,
    max_age: float | None,
    delete: Callable[[Link[T], list[Link[T]]], bool],
) -> list[Link[T]]:
    """Delete leaves until the limits hold. `delete(victim, remaining)` returns False when the
    victim could not go (a running build holds it): it and what it is backed by then stay."""
    remaining = list(links)
    deleted: list[Link[T]] = []
    busy: set[str] = set()
    while True:
        parents = {link.parent for link in remaining if link.parent}
        leaves = sorted(
            (x for x in remaining if x.key not in parents and x.key not in busy), key=lambda x: x.used
        )
        victim = next((x for x in leaves if max_age is not None and now - x.used > max_age), None)
        if victim is None and max_size is not None and sum(x.size for x in remaining) > max_size and leaves:
            victim = leaves[0]
        if victim is None:
            return deleted
        remaining.remove(victim)
        if delete(victim, remaining):
            deleted.append(victim)
        else:
            remaining.append(victim)
            busy.add(victim.key)
