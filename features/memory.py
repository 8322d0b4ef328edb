"""An in-memory FeatureStore, for tests and embedded replays.

It keeps what the Redis store keeps (the same card bytes, the same bucket
counts as plain counters, the same fraud entries) and follows the same
steps as its Lua script, so the contract suite can hold both to the same
vectors. It never expires anything: a replay's memory grows with its
number of cards and terminals. A transaction applied but not saved keeps
its whole state here (Redis keeps a pointer into its card instead); both
answer its redelivery alike (see :class:`~features.store.Status`).

Examples
--------
>>> import asyncio
>>> from features.events import Transaction
>>> from features.store import ScoredRecord, Status
>>> from features.vector import view
>>> store = MemoryFeatureStore()
>>> t = Transaction("t1", "c1", "p1", 5.0, 100.0)
>>> [applied] = asyncio.run(store.apply([t]))
>>> applied.status
<Status.NEW: 'new'>
>>> rec = ScoredRecord("t1", "c1", "p1", 100.0, view(applied.state, t), 0.1, 1)
>>> asyncio.run(store.save([(applied, rec)]))
>>> asyncio.run(store.apply([t]))[0].status
<Status.DONE: 'done'>
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from features import card, card_bytes, terminal
from features.events import Label, Transaction
from features.store import Applied, ScoredRecord, Status, decode_state
from features.vector import EntityState

#: The fewest buckets a terminal holds before they are pruned: every window's kept span.
PRUNE_AT_LEAST = len(terminal.WINDOWS) * (terminal.KEEP_BUCKETS + 1)


@dataclass
class _Terminal:
    buckets: dict[int, int] = field(default_factory=dict)
    newest: tuple[int | None, ...] = (None,) * len(terminal.WINDOWS)
    frauds: dict[str, bytes] = field(default_factory=dict)
    #: Buckets no one reads again are dropped once this many are held: at most twice as
    #: many as are needed, at the cost of one look at each bucket kept (pruning whenever
    #: a window moves on, each hour, would look at them all: 9 % of a scorecard run).
    prune_at: int = PRUNE_AT_LEAST


class MemoryFeatureStore:
    """Dict-backed :class:`~features.store.FeatureStore`."""

    def __init__(self, allowed_lateness: float = 3600.0) -> None:
        self.allowed_lateness = allowed_lateness
        self._cards: dict[str, bytes] = {}
        self._terminals: dict[str, _Terminal] = {}
        #: Applied, not saved: the state before, and the card's dropped count then.
        self._pending: dict[str, tuple[EntityState, int]] = {}
        self._scored: dict[str, bytes] = {}
        #: Transaction id -> the card it was first applied with.
        self._owners: dict[str, str] = {}

    async def apply(self, txns: Sequence[Transaction]) -> list[Applied]:
        return [self._apply(txn) for txn in txns]

    async def apply_parts(
        self, parts: Sequence[Sequence[Transaction]]
    ) -> AsyncIterator[list[Applied]]:
        for part in parts:
            yield [self._apply(txn) for txn in part]

    def _apply(self, txn: Transaction) -> Applied:
        owner = self._owners.get(txn.txn_id)
        if owner is not None and owner != txn.card_id:
            return Applied(txn, Status.CONFLICT, owner=owner)
        if (saved := self._scored.get(txn.txn_id)) is not None:
            return Applied(txn, Status.DONE, record=ScoredRecord.from_bytes(saved))
        blob = self._cards.get(txn.card_id, b"")
        if (pending := self._pending.get(txn.txn_id)) is not None:
            state, dropped = pending
            if card_bytes.lost_since(blob, dropped, txn):
                return Applied(txn, Status.LATE, newest=card_bytes.decode(blob).newest)
            return Applied(txn, Status.PENDING, state=state)
        term = self._terminals.get(txn.terminal_id, _Terminal())
        state = decode_state(blob, *self._terminal_view(term, txn.event_time))
        if card.is_too_late(state.card, txn, self.allowed_lateness):
            return Applied(txn, Status.LATE, newest=state.card.newest)
        self._owners[txn.txn_id] = txn.card_id  # (a late one changed nothing, claims nothing)
        self._terminals[txn.terminal_id] = term
        self._cards[txn.card_id] = card_bytes.append(blob, txn, self.allowed_lateness)
        term.newest = terminal.count_in_place(term.buckets, term.newest, txn.event_time)
        if len(term.buckets) > term.prune_at:
            terminal.prune(term.buckets, term.newest)
            term.prune_at = max(PRUNE_AT_LEAST, 2 * len(term.buckets))
        self._pending[txn.txn_id] = (state, card_bytes.HEADER.unpack_from(blob)[1] if blob else 0)
        return Applied(txn, Status.NEW, state=state)

    async def save(self, scored: Sequence[tuple[Applied, ScoredRecord]]) -> None:
        for _, record in scored:
            self._scored[record.txn_id] = record.to_bytes()
            self._pending.pop(record.txn_id, None)

    async def peek(self, txn: Transaction) -> EntityState:
        term = self._terminals.get(txn.terminal_id, _Terminal())
        counts, frauds = self._terminal_view(term, txn.event_time)
        return decode_state(self._cards.get(txn.card_id), counts, frauds)

    async def peek_many(self, txns: Sequence[Transaction]) -> list[EntityState]:
        return [await self.peek(txn) for txn in txns]

    @staticmethod
    def _terminal_view(term: _Terminal, at: float) -> tuple[tuple[int, ...], list[bytes]]:
        counts = terminal.window_counts(term.buckets, term.newest, at)
        floor = terminal.fraud_floor(term.newest, at)
        frauds = [v for v in term.frauds.values() if terminal.FRAUD.unpack(v)[0] >= floor]
        return counts, frauds

    async def record_fraud(self, record: ScoredRecord, label: Label) -> None:
        """:meth:`features.store.FeatureStore.record_fraud`: the first arrival counts."""
        term = self._terminals.setdefault(record.terminal_id, _Terminal())
        packed = terminal.pack_fraud(record.event_time, label.event_time)
        term.frauds.setdefault(record.txn_id, packed)  # the first arrival counts

    async def record_frauds(self, frauds: Sequence[tuple[ScoredRecord, Label]]) -> None:
        for record, label in frauds:
            await self.record_fraud(record, label)

    async def scored(self, txn_id: str, card_id: str | None = None) -> ScoredRecord | None:
        """:meth:`features.store.FeatureStore.scored`."""
        raw = self._scored.get(txn_id)
        if raw is None:
            return None
        record = ScoredRecord.from_bytes(raw)
        return record if card_id is None or record.card_id == card_id else None

    async def scored_many(
        self,
        txn_ids: Sequence[str],
        card_ids: Sequence[str | None] | None = None,
    ) -> list[ScoredRecord | None]:
        """:meth:`features.store.FeatureStore.scored_many`."""
        cards = card_ids if card_ids is not None else [None] * len(txn_ids)
        return [
            await self.scored(txn_id, card_id)
            for txn_id, card_id in zip(txn_ids, cards, strict=True)
        ]

    def forget(self, txn_id: str) -> None:
        """Drop a scored transaction's record (an embedded run that learned its label
        needs it no more; Redis lets it expire)."""
        self._scored.pop(txn_id, None)
        self._owners.pop(txn_id, None)

    async def close(self) -> None:
        return None
