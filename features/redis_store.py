"""The Redis FeatureStore used in production.

Keys carry the feature-set version, so a new feature set never reads old
state: ``{prefix}:v{version}:card:{card_id}`` holds a card's encoded state,
``{prefix}:v{version}:scored:{txn_id}`` a scored record. ``begin`` is one
round trip (both reads pipelined); ``commit`` is one ``MULTI``/``EXEC``, so a
card's state and the transaction's record change together or not at all.
Card state expires when it can no longer matter; scored records when their
label can no longer be expected.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from features.card import (
    FEATURE_SET_VERSION,
    HORIZON_SECONDS,
    SINCE_PREV_CAP_SECONDS,
    CardState,
    decode_state,
    encode_state,
)
from features.events import Transaction
from features.store import ScoredRecord

#: A card idle this long is forgotten (its features would all be at their caps).
CARD_TTL_SECONDS = int(max(HORIZON_SECONDS, SINCE_PREV_CAP_SECONDS) + 86400)


class RedisFeatureStore:
    """:class:`~features.store.FeatureStore` over a ``redis.asyncio`` client."""

    def __init__(
        self, client: aioredis.Redis, key_prefix: str, scored_ttl_seconds: int = 90 * 86400
    ) -> None:
        self.client = client
        self.key_prefix = key_prefix
        self.scored_ttl_seconds = scored_ttl_seconds
        self._base = f"{key_prefix}:v{FEATURE_SET_VERSION}"

    @classmethod
    def from_url(
        cls, url: str, key_prefix: str, scored_ttl_seconds: int = 90 * 86400
    ) -> RedisFeatureStore:
        """A store with its own connection pool to ``url``."""
        return cls(aioredis.Redis.from_url(url), key_prefix, scored_ttl_seconds)

    def card_key(self, card_id: str) -> str:
        return f"{self._base}:card:{card_id}"

    def scored_key(self, txn_id: str) -> str:
        return f"{self._base}:scored:{txn_id}"

    async def begin(self, txn: Transaction) -> tuple[CardState, ScoredRecord | None]:
        pipe = self.client.pipeline(transaction=False)
        pipe.get(self.card_key(txn.card_id))
        pipe.get(self.scored_key(txn.txn_id))
        raw_state, raw_record = await pipe.execute()
        record = None if raw_record is None else ScoredRecord.from_json(raw_record)
        return decode_state(raw_state), record

    async def commit(self, txn: Transaction, state: CardState, record: ScoredRecord) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.set(self.card_key(txn.card_id), encode_state(state), ex=CARD_TTL_SECONDS)
        pipe.set(self.scored_key(txn.txn_id), record.to_json(), ex=self.scored_ttl_seconds)
        await pipe.execute()

    async def card_state(self, card_id: str) -> CardState:
        return decode_state(await self.client.get(self.card_key(card_id)))

    async def scored(self, txn_id: str) -> ScoredRecord | None:
        raw: Any = await self.client.get(self.scored_key(txn_id))
        return None if raw is None else ScoredRecord.from_json(raw)

    async def close(self) -> None:
        await self.client.aclose()
