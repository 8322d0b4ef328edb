"""An in-memory FeatureStore, for tests and embedded replays.

Examples
--------
>>> import asyncio
>>> from features.card import step
>>> from features.events import Transaction
>>> from features.store import ScoredRecord
>>> store = MemoryFeatureStore()
>>> t = Transaction("t1", "c1", "p1", 5.0, 100.0)
>>> state, done = asyncio.run(store.begin(t))
>>> done is None
True
>>> rec = ScoredRecord("t1", "c1", 100.0, {}, 0.1, 1)
>>> asyncio.run(store.commit(t, step(state, t), rec))
>>> asyncio.run(store.scored("t1")) == rec
True
"""

from __future__ import annotations

from features.card import CardState
from features.events import Transaction
from features.store import ScoredRecord


class MemoryFeatureStore:
    """Dict-backed :class:`~features.store.FeatureStore`."""

    def __init__(self) -> None:
        self._cards: dict[str, CardState] = {}
        self._scored: dict[str, ScoredRecord] = {}

    async def begin(self, txn: Transaction) -> tuple[CardState, ScoredRecord | None]:
        return await self.card_state(txn.card_id), self._scored.get(txn.txn_id)

    async def commit(self, txn: Transaction, state: CardState, record: ScoredRecord) -> None:
        self._cards[txn.card_id] = state
        self._scored[txn.txn_id] = record

    async def card_state(self, card_id: str) -> CardState:
        return self._cards.get(card_id, CardState())

    async def scored(self, txn_id: str) -> ScoredRecord | None:
        return self._scored.get(txn_id)

    async def close(self) -> None:
        return None
