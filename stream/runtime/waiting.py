"""Labels that came before the stream reached them.

A label arrives days after its transaction, so it normally finds that
transaction's scored vector in the store, and the stream has scored every
transaction up to the label's arrival. But the worker consumes the labels
topic and the transactions topic independently: in a replay at full speed, or
while the worker catches up after an outage, a label can overtake the
transactions. Learning it then would teach the model the future: in event
time, the label is not known yet to the transactions being scored. And when
it overtakes its own transaction there is no vector to learn from.
Dead-lettering it would take it from the learner for good.

So such a label *waits*, until both its transaction has been scored and the
worker's stream time (the newest event time it scored) has reached the
label's arrival time. It is kept in a Redis hash (so it survives a restart
and its Kafka offset can be committed). The worker's group getting past
every transaction that was already in Kafka when the label was parked ends
the wait too: producers send every transaction before a later label, so
none older than it is still to come. The label is then learned, or, if its
transaction never came, dead-lettered as ``unknown_transaction``.

Examples
--------
>>> from features.events import Label
>>> raw = RawRecord("labels", 2, 17, b"t9", b"{}")
>>> item = Waiting(raw, Label("t9", True, 1000.0), until={0: 5, 1: 8})
>>> Waiting.from_json(item.to_json()) == item
True
>>> item.field
'labels|2|17'
>>> item.passed({0: 5, 1: 7}), item.passed({0: 6, 1: 8})
(False, True)
>>> item.due(999.0), item.due(1000.0)
(False, True)
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from features.events import Label
from stream.runtime.records import RawRecord


class GroupProgress(Protocol):
    """How far the worker's group has got through the transactions topic."""

    def read(self) -> tuple[dict[int, int], dict[int, int]]:
        """Committed offsets of the group and end offsets of the topic, by partition."""
        ...


@dataclass
class Waiting:
    """One label waiting for its transaction, with where it was consumed."""

    record: RawRecord
    label: Label
    #: End offsets of the transactions topic read after the label was parked:
    #: once the group has committed them all, the transaction is not coming.
    until: dict[int, int] | None = None

    @property
    def field(self) -> str:
        """Its field in the Redis hash: unique per consumed record."""
        return f"{self.record.topic}|{self.record.partition}|{self.record.offset}"

    def passed(self, committed: Mapping[int, int]) -> bool:
        """Whether the group has committed every transaction that was in Kafka."""
        return bool(self.until) and all(
            committed.get(partition, 0) >= end for partition, end in (self.until or {}).items()
        )

    def due(self, stream_time: float) -> bool:
        """Whether the stream has reached the label's arrival (event) time."""
        return stream_time >= self.label.event_time

    def to_json(self) -> str:
        r = self.record
        return json.dumps(
            {
                "topic": r.topic,
                "partition": r.partition,
                "offset": r.offset,
                "key": None if r.key is None else r.key.decode("utf-8", "surrogateescape"),
                "value": None if r.value is None else r.value.decode("utf-8", "surrogateescape"),
                "txn_id": self.label.txn_id,
                "is_fraud": self.label.is_fraud,
                "event_time": self.label.event_time,
                "card_id": self.label.card_id,
                "until": None if self.until is None else {str(p): o for p, o in self.until.items()},
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> Waiting:
        d: dict[str, Any] = json.loads(text)
        record = RawRecord(
            d["topic"],
            d["partition"],
            d["offset"],
            None if d["key"] is None else d["key"].encode("utf-8", "surrogateescape"),
            None if d["value"] is None else d["value"].encode("utf-8", "surrogateescape"),
        )
        until = None if d["until"] is None else {int(p): o for p, o in d["until"].items()}
        return cls(
            record, Label(d["txn_id"], d["is_fraud"], d["event_time"], d.get("card_id")), until
        )


class WaitingLabels:
    """The waiting labels: kept in a Redis hash, indexed in memory by transaction.

    The worker is the only writer of the hash (it is the single learner), so
    the in-memory index is loaded once at start and then kept in step. A heap
    by arrival time finds the labels the stream has reached without a scan.
    """

    def __init__(self, client: Any, key: str) -> None:
        self.client = client
        self.key = key
        self._items: dict[str, Waiting] = {}
        self._by_txn: dict[str, set[str]] = {}
        #: Labels whose transaction was scored since they were last tried.
        self._ready: set[str] = set()
        #: (arrival, field) of the labels the stream has not reached yet.
        self._arrivals: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._items)

    async def load(self) -> int:
        """Read back the labels that were waiting when the worker stopped."""
        stored: dict[bytes, bytes] = await self.client.hgetall(self.key)
        for raw in stored.values():
            self._index(Waiting.from_json(raw))  # each is tried once the stream is at it
        return len(stored)

    async def refresh(self) -> int:
        """Index the labels someone else parked since :meth:`load` (a learner that lost its
        lease and had not noticed yet): one ``HLEN`` when there are none. Returns how
        many were new."""
        if int(await self.client.hlen(self.key)) == len(self._items):
            return 0
        stored: dict[bytes, bytes] = await self.client.hgetall(self.key)
        new = [raw for field, raw in stored.items() if field.decode() not in self._items]
        for raw in new:
            self._index(Waiting.from_json(raw))
        return len(new)

    async def park_many(self, items: Sequence[Waiting]) -> None:
        """Keep ``items`` until the stream reaches each and its transaction is scored,
        or the group gets past its bound (one round trip)."""
        if not items:
            return
        await self.client.hset(self.key, mapping={i.field: i.to_json() for i in items})
        for item in items:
            self._index(item)

    def scored(self, txn_id: str) -> None:
        """Note that ``txn_id`` was scored: its waiting labels are ready."""
        fields = self._by_txn.get(txn_id)
        if fields:
            self._ready.update(fields)

    def take_ready(self, stream_time: float) -> list[Waiting]:
        """The labels worth trying now: the stream reached them since the last call,
        or their transaction was scored since and the stream had reached them.

        A label that is not due yet comes back through the heap once it is.
        """
        fields = {f for f in self._ready if f in self._items and self._items[f].due(stream_time)}
        self._ready.clear()
        arrivals = self._arrivals
        while arrivals and arrivals[0][0] <= stream_time:
            _, field = heapq.heappop(arrivals)
            if field in self._items:
                fields.add(field)
        return [self._items[f] for f in sorted(fields)]

    def earliest(self) -> float | None:
        """The arrival time of the earliest label not tried since the stream reached it
        (None: none). Until it is tried, no transaction after it should be scored: the
        model has not learned it (:mod:`stream.runtime.flow`)."""
        arrivals = self._arrivals
        while arrivals and arrivals[0][1] not in self._items:
            heapq.heappop(arrivals)  # learned or dead-lettered by another way
        return arrivals[0][0] if arrivals else None

    async def bound(self, ends: Mapping[int, int]) -> None:
        """Give every label that has no bound yet the current end offsets."""
        if not ends:  # no partition known: no bound (an empty one would pass at once)
            return
        fresh = [item for item in self._items.values() if not item.until]
        for item in fresh:
            item.until = dict(ends)
        if fresh:
            await self.client.hset(self.key, mapping={i.field: i.to_json() for i in fresh})

    def given_up(self, committed: Mapping[int, int]) -> list[Waiting]:
        """The labels whose transaction is not coming: the group got past their bound."""
        return [item for item in self._items.values() if item.passed(committed)]

    async def forget_many(self, items: Sequence[Waiting]) -> None:
        """``items`` were learned or dead-lettered."""
        if not items:
            return
        await self.client.hdel(self.key, *(item.field for item in items))
        self.drop(items)

    def restore(self, items: Sequence[Waiting]) -> None:
        """Index ``items`` again (dropped here, still in the hash): tried again as due."""
        for item in items:
            self._index(item)

    def drop(self, items: Sequence[Waiting]) -> None:
        """Forget ``items`` here only (the hash keeps them until :meth:`forget_many`)."""
        for item in items:
            self._items.pop(item.field, None)
            fields = self._by_txn.get(item.label.txn_id)
            if fields is not None:
                fields.discard(item.field)
                if not fields:
                    del self._by_txn[item.label.txn_id]

    def _index(self, item: Waiting) -> None:
        self._items[item.field] = item
        self._by_txn.setdefault(item.label.txn_id, set()).add(item.field)
        heapq.heappush(self._arrivals, (item.label.event_time, item.field))
