"""The FeatureStore protocol: where card state and scored vectors live.

Two implementations honour it, :class:`features.memory.MemoryFeatureStore`
and :class:`features.redis_store.RedisFeatureStore`; one contract test suite
runs against both. The store holds two things per the design:

- each card's :class:`~features.card.CardState` (one writer per card: the
  scoring agent that owns the card's partition);
- each scored transaction's :class:`ScoredRecord`, the exact vector it was
  scored with, kept for its late label. Its presence also marks the
  transaction as applied, which makes redelivery harmless.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Protocol

from features.card import CardState
from features.events import Transaction


@dataclass(frozen=True, slots=True)
class ScoredRecord:
    """A transaction as it was scored: its vector, score and model version.

    Examples
    --------
    >>> r = ScoredRecord("t1", "c1", 10.0, {"x": 1.0}, 0.25, 3)
    >>> ScoredRecord.from_json(r.to_json()) == r
    True
    """

    txn_id: str
    card_id: str
    event_time: float
    features: dict[str, float]
    score: float
    model_version: int

    def to_json(self) -> bytes:
        """Compact JSON bytes."""
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> ScoredRecord:
        """The record encoded as ``raw`` by :meth:`to_json`."""
        return cls(**json.loads(raw))


class FeatureStore(Protocol):
    """Card state and scored records, read and written per transaction."""

    async def begin(self, txn: Transaction) -> tuple[CardState, ScoredRecord | None]:
        """The card's state, and ``txn``'s record if it was already scored."""
        ...

    async def commit(self, txn: Transaction, state: CardState, record: ScoredRecord) -> None:
        """Store the card's new ``state`` and ``txn``'s ``record``, atomically."""
        ...

    async def card_state(self, card_id: str) -> CardState:
        """The card's current state (empty for an unknown card); read-only."""
        ...

    async def scored(self, txn_id: str) -> ScoredRecord | None:
        """The record ``txn_id`` was scored with, if it is known and not expired."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...
