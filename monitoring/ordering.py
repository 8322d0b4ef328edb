"""Records from several partitions, handed to the detectors in event-time order.

A worker reads its partitions at about the same *number* of records each,
not at the same *event time*. Live, every partition is near the present and
the difference does not matter. But when the worker catches up on a backlog
(after an outage, a restart, or a replay at full speed), a partition with
fewer records per day runs days ahead of the others, and at the end of the
backlog the slowest partition is read alone. The detectors' windows are then
filled with a few partitions' cards in a skewed slice of time: the score and
feature distributions move although the traffic does not, and prediction
drift pages after every catch-up.

:class:`EventTimeOrder` holds items back until every partition that still
has records waiting in Kafka has reached their event time (a low watermark
over the partitions that are *behind*), and releases them in event-time
order. A partition that is caught up (nothing after the record it gave
when it was fetched) holds nothing back, so live traffic passes through at
once. At most ``max_held`` items are held: beyond that the oldest go out
early, and are counted.

A partition is known from the first record read from it: one that has not
yet given any record cannot hold others back, so records are best handed
over a fetched batch at a time (:meth:`EventTimeOrder.add_many`), and the
first batch after a start brings every partition with a backlog.

Examples
--------
>>> order = EventTimeOrder(max_held=100)
>>> order.add(1.0, "b1", source=1, behind=True)  # partition 1 has more to come
['b1']
>>> order.add(5.0, "a5", source=0, behind=True)  # partition 1 is only at time 1: 5 waits
[]
>>> order.add(7.0, "b7", source=1, behind=True)
['a5']
>>> order.add(6.0, "a6", source=0, behind=False)  # partition 0 caught up: only 1 holds back
['a6', 'b7']
>>> len(order)
0
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Hashable, Iterable
from typing import Generic, TypeVar

T = TypeVar("T")


class EventTimeOrder(Generic[T]):
    """Items released in event-time order once no partition behind can precede them."""

    def __init__(self, max_held: int) -> None:
        if max_held < 0:
            raise ValueError(f"max_held: must be >= 0, got {max_held}")
        self.max_held = max_held
        self._held: list[tuple[float, int, T]] = []
        self._seq = itertools.count()
        #: Partitions with records still waiting in Kafka -> the newest event time read.
        self._behind: dict[Hashable, float] = {}
        #: Items released before the watermark reached them (``max_held`` exceeded).
        self.released_early = 0

    def add(
        self, event_time: float, item: T, source: Hashable = None, behind: bool = False
    ) -> list[T]:
        """Hold ``item`` and return every item that can now go, oldest first.

        Parameters
        ----------
        event_time
            The item's event time (seconds): the order of release.
        item
            The item to hold.
        source
            The partition it came from.
        behind
            Whether ``source`` held more records after this one when it was fetched.
        """
        return self.add_many([(event_time, item, source, behind)])

    def add_many(self, entries: Iterable[tuple[float, T, Hashable, bool]]) -> list[T]:
        """:meth:`add` for a fetched batch, ``(event_time, item, source, behind)`` each:
        every partition in the batch is known before anything is released."""
        for event_time, item, source, behind in entries:
            heapq.heappush(self._held, (event_time, next(self._seq), item))
            if behind:
                self._behind[source] = max(event_time, self._behind.get(source, -math.inf))
            else:
                self._behind.pop(source, None)
        return self._release()

    def forget(self, sources: Iterable[Hashable]) -> list[T]:
        """``sources`` are no longer read here (revoked): they hold nothing back."""
        for source in sources:
            self._behind.pop(source, None)
        return self._release()

    @property
    def watermark(self) -> float:
        """Items at or before this event time can go (infinite when no partition is behind)."""
        return min(self._behind.values(), default=math.inf)

    def _release(self) -> list[T]:
        watermark = self.watermark
        out = []
        while self._held and (self._held[0][0] <= watermark or len(self._held) > self.max_held):
            if self._held[0][0] > watermark:
                self.released_early += 1
            out.append(heapq.heappop(self._held)[2])
        return out

    def __len__(self) -> int:
        return len(self._held)
