"""The FeatureStore over a Redis Cluster: the card and the terminal in their own slots.

A Redis Cluster runs a script only over keys of one slot, and the single
store's script updates a transaction's card and its terminal together. Here
each side has its own script, over its own entity's keys
(:class:`features.keys.KeyLayout` tags them), sent per slot through the
cluster pipeline (each node gets its commands in one round trip):

1. **the card side** (``card`` script, per card slot): the transaction is
   checked against its ``scored`` key (``DONE`` with its record, or
   ``PENDING``), against its card's lateness (``LATE``), else appended to the
   card with a ``P`` marker holding where its card stood;
2. **the terminal side** (``terminal`` script, per terminal slot), for the
   transactions the card side took (``NEW`` or ``PENDING``): the transaction
   is counted in its terminal's windows and its window sums and fraud
   entries are kept under its ``applied`` key; a transaction with an
   ``applied`` key is not counted again, and gets the state it was counted
   on.

Exactly once, across the two slots:

- a transaction reaches the terminal only after its card took it, so a late
  or already-saved one never counts at its terminal;
- the terminal counts it once (its ``applied`` key, written in the same
  script), however often it is redelivered, whether the process died before
  the terminal side, between the two, or after both;
- its vector never changes once computed: a vector is first computed after
  both sides answered, and from then on the card side gives its card's
  records before it (its marker) and the terminal side its ``applied``
  state; should the process die between the sides, no vector was computed,
  and the redelivery counts it at its terminal then;
- :meth:`~RedisClusterFeatureStore.save` writes the record (``D``) and the
  transaction index, and only once they are written shortens the
  ``applied`` keys' lives to :data:`APPLIED_GRACE_SECONDS` (a redelivery then
  stops at the card side). Not deleted at once: an apply that found the
  card's ``P`` marker just before the record was written reaches the
  terminal just after, and must still find what the transaction was counted
  on (deleting them counted such a redelivery twice in the seeded-vector
  test). Should the process die in between, they expire with the records.

One transaction costs two script calls (the single store runs 32 in one),
in two round trips; what that costs in Redis CPU per shard is measured by
``fraudstream bench features --redis-cluster``.
"""

from __future__ import annotations

import struct
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from typing import Any, cast

from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from features import card, terminal
from features.events import Transaction
from features.redis_lua import SUMS
from features.redis_store import SCRIPT_BATCH, RedisFeatureStore, reply_state
from features.store import Applied, ScoredRecord, Status
from features.vector import EntityState

#: How long a transaction's ``applied`` key outlives its saved record: far longer than
#: the time between the two sides of one apply (a round trip), short enough that the
#: keys of only a few minutes of transactions are held.
APPLIED_GRACE_SECONDS = 600
_BUCKETS = struct.Struct("<iii")
_NEWEST = struct.Struct("<d")
_STATUS = {status.value.encode(): status for status in Status}


class RedisClusterFeatureStore(RedisFeatureStore):
    """:class:`~features.store.FeatureStore` over a ``redis.asyncio`` cluster client."""

    client: Any

    def __init__(self, client: RedisCluster, key_prefix: str, **options: Any) -> None:
        super().__init__(cast(Any, client), key_prefix, **options)

    @classmethod
    def from_url(cls, url: str, key_prefix: str,
                 **options: Any) -> RedisClusterFeatureStore:
        """A store over the cluster that ``url`` (any of its nodes) belongs to."""
        return cls(RedisCluster.from_url(url), key_prefix, **options)

    async def apply_parts(
        self, parts: Sequence[Sequence[Transaction]]
    ) -> AsyncIterator[list[Applied]]:
        for part in parts:
            yield await self._apply_part(part)

    async def _apply_part(self, txns: Sequence[Transaction]) -> list[Applied]:
        keys = self.keys
        started = time.perf_counter()
        cards = await self._per_slot(
            "card", txns, lambda t: (keys.card(t.card_id), keys.scored(t.card_id, t.txn_id)),
            lambda chunk: b"".join(card.RECORD.pack(*card.record(t)) for t in chunk))
        took = [i for i, (kind, _) in enumerate(cards) if kind in (b"new", b"pending")]
        states = await self._per_slot(
            "terminal", [txns[i] for i in took],
            lambda t: (keys.term(t.terminal_id), keys.fraud(t.terminal_id),
                       keys.applied(t.terminal_id, t.txn_id)),
            lambda chunk: b"".join(_BUCKETS.pack(*terminal.current_buckets(t.event_time))
                                   for t in chunk))
        if self.observe is not None:
            self.observe("apply", time.perf_counter() - started)
        at_terminal = dict(zip(took, states, strict=True))
        out = []
        for i, (txn, (kind, value)) in enumerate(zip(txns, cards, strict=True)):
            status = _STATUS[kind]
            if status is Status.DONE:
                out.append(Applied(txn, status, record=ScoredRecord.from_bytes(value)))
            elif status is Status.LATE:
                out.append(Applied(txn, status, newest=_NEWEST.unpack(value)[0]))
            else:
                seen = at_terminal[i]
                out.append(Applied(txn, status, state=reply_state(
                    seen[: SUMS.size], value, seen[SUMS.size :])))
        return out

    async def _per_slot(
        self, script: str, txns: Sequence[Transaction],
        keys_of: Callable[[Transaction], tuple[str, ...]],
        pack: Callable[[Sequence[Transaction]], bytes],
    ) -> list[Any]:
        """Run ``script`` for ``txns``, one call per slot (up to :data:`SCRIPT_BATCH`
        transactions, in their order), all calls in one cluster pipeline; the replies
        in the transactions' order."""
        if not txns:
            return []
        by_slot: dict[int, list[int]] = {}
        all_keys = [keys_of(txn) for txn in txns]
        for i, keys in enumerate(all_keys):
            by_slot.setdefault(key_slot(keys[0].encode()), []).append(i)
        calls = [members[at : at + SCRIPT_BATCH] for members in by_slot.values()
                 for at in range(0, len(members), SCRIPT_BATCH)]

        def build(pipe: Any) -> None:
            for call in calls:
                keys = [key for i in call for key in all_keys[i]]
                pipe.execute_command("EVALSHA", self._shas[script], len(keys), *keys,
                                     pack([txns[i] for i in call]))

        replies = await self._execute(build)
        out: list[Any] = [None] * len(txns)
        for call, reply in zip(calls, replies, strict=True):
            for i, one in zip(call, reply, strict=True):
                out[i] = one
        return out

    def save(self, scored: Sequence[tuple[Applied, ScoredRecord]]) -> Coroutine[Any, Any, None]:
        """Pack the records at once, send them when awaited: the records and the index,
        then (once those are written) the ``applied`` keys' grace."""
        keys, ttl = self.keys, self.scored_ttl_seconds
        writes = [(keys.scored(r.card_id, r.txn_id), b"D" + r.to_bytes(),
                   keys.index(r.txn_id), r.card_id) for _, r in scored]
        done = [keys.applied(r.terminal_id, r.txn_id) for _, r in scored]

        async def send() -> None:
            if not writes:
                return
            pipe = self.client.pipeline()
            for scored_key, value, index_key, card_id in writes:
                pipe.execute_command("SET", scored_key, value, "EX", ttl)
                pipe.execute_command("SET", index_key, card_id, "EX", ttl)
            started = time.perf_counter()
            await pipe.execute()
            pipe = self.client.pipeline()
            for key in done:
                pipe.execute_command("EXPIRE", key, APPLIED_GRACE_SECONDS)
            await pipe.execute()
            if self.observe is not None:
                self.observe("pipeline", time.perf_counter() - started)

        return send()

    async def peek_many(self, txns: Sequence[Transaction]) -> list[EntityState]:
        """Each transaction's card (a GET in its slot) and terminal (a read-only script in
        its slot), all in one cluster pipeline."""
        if not txns:
            return []
        keys = self.keys

        def build(pipe: Any) -> None:
            for txn in txns:
                pipe.execute_command("GET", keys.card(txn.card_id))
                pipe.execute_command(
                    "EVALSHA", self._shas["peek_terminal"], 2, keys.term(txn.terminal_id),
                    keys.fraud(txn.terminal_id), *terminal.current_buckets(txn.event_time))

        replies = await self._execute(build)
        return [reply_state(sums, blob or b"", frauds) for blob, (sums, frauds)
                in zip(replies[0::2], replies[1::2], strict=True)]

    async def _mget(self, keys: list[str]) -> list[Any]:
        return list(await self.client.mget_nonatomic(keys)) if keys else []

    async def health(self) -> tuple[int, int]:
        """Memory in use (bytes) and keys, summed over the cluster's primaries."""
        info: Any = await self.client.info("memory", target_nodes=RedisCluster.PRIMARIES)
        sizes: Any = await self.client.dbsize(target_nodes=RedisCluster.PRIMARIES)
        used = sum(int(one["used_memory"]) for one in info.values()) if isinstance(
            info, dict) and "used_memory" not in info else int(info["used_memory"])
        keys = sum(sizes.values()) if isinstance(sizes, dict) else int(sizes)
        return used, keys

