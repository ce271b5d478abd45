"""The few members of each case worth showing, chosen while every row streams past (grids, the report).

Memory holds ``limit`` members per case whatever the number of rows, so the end of a million-row audit picks
its pictures in one pass; the counts of every case are kept beside them.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections import Counter, defaultdict
from typing import Any, Callable

logger = logging.getLogger(__name__)


class _Worst:
    """A heap entry ordered so that the heap's top is the member to drop first (the largest key, then the
    latest): a bounded min-heap of the keys we keep."""

    __slots__ = ("key", "order", "member")

    def __init__(self, key: Any, order: int, member: Any) -> None:
        self.key, self.order, self.member = key, order, member

    def __lt__(self, other: "_Worst") -> bool:
        return (other.key, other.order) < (self.key, self.order)


class Gallery:
    """Per case, the ``limit`` members of smallest ``key`` (ties: the first added), and every case's count."""

    def __init__(self, limit: int, key: Callable[[Any], Any]) -> None:
        if limit < 0:
            raise ValueError(f"limit: expected >= 0, got {limit}")
        self.limit, self.key = limit, key
        self.counts: Counter[str] = Counter()
        self._heaps: dict[str, list[_Worst]] = defaultdict(list)
        self._order = itertools.count()

    def add(self, case: str, member: Any) -> None:
        self.counts[case] += 1
        if self.limit == 0:
            return
        entry, heap = _Worst(self.key(member), next(self._order), member), self._heaps[case]
        if len(heap) < self.limit:
            heapq.heappush(heap, entry)
        elif (entry.key, entry.order) < (heap[0].key, heap[0].order):  # better than the worst kept
            heapq.heapreplace(heap, entry)

    def members(self, case: str) -> list[Any]:
        """The case's kept members, smallest key first."""
        return [e.member for e in sorted(self._heaps.get(case, []), key=lambda e: (e.key, e.order))]
