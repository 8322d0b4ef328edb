"""The learner's write-ahead journal and its "learned" markers, kept beside the snapshots.

Every label learned since the latest snapshot is appended to the journal (with
the vector it was learned from) together with a per-transaction "learned"
marker, in one Lua script. :class:`models.registry.ModelRegistry` clears the
journal in the same ``MULTI`` as it publishes a snapshot, so ``latest snapshot
+ journal`` is always exactly the labels marked learned.

:class:`LearnJournal` is the registry's journal half: it holds no state of its
own and works on the registry's Redis client, keys and fence.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

from models.errors import FencedError, JournalMismatchError
from models.snapshots import APPENDED, FENCED, MISMATCH, Fence, JournalEntry


class LearnJournal:
    """Append, read and check the journal of one lineage (a mixin of the registry)."""

    client: aioredis.Redis
    fence: Fence | None
    learned_ttl_seconds: int
    _base: str
    _append: AsyncScript

    def _hold_fence(self, raw: Any) -> None:
        """Raise :class:`FencedError` unless ``raw`` (the fence key's value) is our token."""
        if self.fence is not None and (raw is None or int(raw) != self.fence.token):
            raise FencedError(
                f"fencing token {self.fence.token} is stale (now "
                f"{raw!r}): another learner took over"
            )

    async def record_learned_many(self, entries: Sequence[JournalEntry], journaled: int) -> None:
        """Append ``entries`` to the journal and mark their transactions learned, at once,
        if the journal still holds ``journaled`` entries (the writer's own count).

        One script, so the write is all or nothing and safe to send twice: a
        resend of a write that was applied (its reply lost, redis-py retried)
        finds exactly these entries at the journal's end and changes nothing.
        Raises :class:`JournalMismatchError` when the journal holds something
        else (its length is on the error), :class:`FencedError` when another
        learner took over.

        Parameters
        ----------
        entries
            The labels learned, in order.
        journaled
            How many entries the journal must hold before these (the writer's count of
            labels learned since the latest snapshot).
        """
        if not entries:
            return
        # packed, not JSON: json.dumps of a vector was 8 % of a learner's time (py-spy)
        journal = [e.to_bytes() for e in entries]
        fence_key = self.fence.key if self.fence is not None else f"{self._base}:journal"
        token = str(self.fence.token) if self.fence is not None else ""
        markers = [f"{self._base}:learned:{e.txn_id}" for e in entries]
        status, value = await self._append(
            keys=[f"{self._base}:journal", fence_key, *markers],
            args=[journaled, token, self.learned_ttl_seconds, *journal],
        )
        if status == APPENDED:
            return
        if status == FENCED:
            self._hold_fence(value or None)
        elif status == MISMATCH:
            raise JournalMismatchError(int(value), journaled)

    async def journal_length(self) -> int:
        """How many labels were learned since the latest snapshot."""
        return int(await self.client.llen(f"{self._base}:journal"))

    async def _check_fence(self) -> None:
        """Raise :class:`FencedError` if the fence no longer holds."""
        if self.fence is not None:
            self._hold_fence(await self.client.get(self.fence.key))

    async def were_learned(self, txn_ids: Sequence[str]) -> list[bool]:
        """Whether each transaction's label was learned already (one round trip)."""
        if not txn_ids:
            return []
        markers: list[Any] = await self.client.mget(
            [f"{self._base}:learned:{txn_id}" for txn_id in txn_ids]
        )
        return [marker is not None for marker in markers]

    async def journal(self) -> list[JournalEntry]:
        """Labels learned since the latest snapshot, in order."""
        raw: list[Any] = await self.client.lrange(f"{self._base}:journal", 0, -1)
        return [JournalEntry.from_bytes(item) for item in raw]
