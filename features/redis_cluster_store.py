"""The FeatureStore over a Redis Cluster: the card and the terminal in their own slots.

A Redis Cluster runs a script only over keys of one slot, and the single
store's script updates a transaction's card and its terminal together. Here
each side has its own script, over its own entity's keys
(:class:`features.keys.KeyLayout` tags them), sent per slot through the
cluster pipeline (each node gets its commands in one round trip):

0. **the claim** (per transaction id's slot): the id is claimed for its card
   (``SET NX GET`` of its ``txn`` key, in a script); claimed before by another
   card, it is a ``CONFLICT`` and goes no further (a transaction too late for
   its card gives its new claim back: it changed nothing);
1. **the card side** (``card`` script, per card slot): the transaction is
   checked against its ``scored`` key (``DONE`` with its record, or
   ``PENDING``), against its card's lateness (``LATE``), else appended to the
   card with a ``P`` marker holding where its card stood;
2. **the terminal side** (``terminal`` script, per terminal slot), for the
   transactions the card side took (``NEW`` or ``PENDING``, and those applied
   before that are now answered ``LATE`` because their card dropped a record
   they could see: counted at their card, they must be at their terminal):
   the transaction is counted in its terminal's windows and its window sums
   and fraud entries are kept under its ``applied`` key; a transaction with an
   ``applied`` key is not counted again, and gets the state it was counted
   on.

Exactly once, across the two slots:

- a transaction reaches the terminal only after its card took it, so one
  too late on arrival or already saved never counts at its terminal, and
  one its card took always does (even if, redelivered, it is answered late);
- the terminal counts it once (its ``applied`` key, written in the same
  script), however often it is redelivered, whether the process died before
  the terminal side, between the two, or after both;
- its vector never changes once computed: a vector is first computed after
  both sides answered, and from then on the card side gives its card's
  records before it (its marker) and the terminal side its ``applied``
  state; should the process die between the sides, no vector was computed,
  and the redelivery counts it at its terminal then;
- :meth:`~RedisClusterFeatureStore.save` writes the record (``D``), and only
  once it is written shortens the
  ``applied`` keys' lives to :data:`APPLIED_GRACE_SECONDS` (a redelivery then
  stops at the card side). Not deleted at once: an apply that found the
  card's ``P`` marker just before the record was written reaches the
  terminal just after, and must still find what the transaction was counted
  on (deleting them would count such a redelivery twice). Should the process
  die in between, they expire with the records.

Commands go to the master of their slot, packed into one write per node
and read back in order on one connection each (redis-py's cluster pipeline
would take 5 of the 8 seconds of the cluster path); should
anything go wrong (a slot moved, a node gone, a script lost), the batch is
sent again through the cluster pipeline, which follows redirections and
refreshes the slot map (every command here is safe to repeat). What the
layout costs in Redis CPU per master is measured by ``fraudstream bench
features --redis-cluster``.
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from typing import Any, cast

from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import NoScriptError, RedisClusterException, RedisError

from features import card, card_bytes, terminal
from features.events import Transaction
from features.redis_lua import SUMS
from features.redis_store import SCRIPT_BATCH, RedisFeatureStore
from features.redis_wire import NEWEST, STATUS, reply_state, saved_record, send_to_masters
from features.store import Applied, ScoredRecord, Status
from features.vector import EntityState

#: How long a transaction's ``applied`` key outlives its saved record: far longer than
#: the time between the two sides of one apply (a round trip), short enough that the
#: keys of only a few minutes of transactions are held.
APPLIED_GRACE_SECONDS = 600
_BUCKETS = struct.Struct("<iii")
log = logging.getLogger(__name__)


class RedisClusterFeatureStore(RedisFeatureStore):
    """:class:`~features.store.FeatureStore` over a ``redis.asyncio`` cluster client.

    Parameters
    ----------
    client
        The cluster client the store sends its commands through.
    key_prefix
        The first part of every key (:class:`features.keys.KeyLayout`); no ``{`` or ``}``.
    options
        :class:`~features.redis_store.RedisFeatureStore`'s keyword options
        (``allowed_lateness``, ``scored_ttl_seconds``, ``observe``).
    """

    client: Any

    def __init__(self, client: RedisCluster, key_prefix: str, **options: Any) -> None:
        super().__init__(cast(Any, client), key_prefix, **options)

    @classmethod
    def from_url(cls, url: str, key_prefix: str, **options: Any) -> RedisClusterFeatureStore:
        """A store over the cluster that ``url`` (any of its nodes) belongs to.

        Parameters
        ----------
        url
            The Redis URL of any node of the cluster.
        key_prefix, options
            As for the class.
        """
        return cls(RedisCluster.from_url(url), key_prefix, **options)

    async def apply_parts(
        self, parts: Sequence[Sequence[Transaction]]
    ) -> AsyncIterator[list[Applied]]:
        for part in parts:
            yield await self._apply_part(part)

    async def _apply_part(self, txns: Sequence[Transaction]) -> list[Applied]:
        started = time.perf_counter()
        owners = await self.claim(txns)
        mine = [
            i
            for i, (txn, owner) in enumerate(zip(txns, owners, strict=True))
            if owner is None or owner == txn.card_id.encode()
        ]
        cards = dict(zip(mine, await self.card_side([txns[i] for i in mine]), strict=True))
        # 'lost': applied before, now answered late; its terminal must count it all the same
        took = [i for i in mine if cards[i][0] in (b"new", b"pending", b"lost")]
        states = await self.terminal_side([txns[i] for i in took])
        late = [txns[i] for i in mine if cards[i][0] == b"late" and owners[i] is None]
        if late:  # too late on arrival: it changed nothing, so it claims nothing either
            await self.release(late)
        if self.observe is not None:
            self.observe("apply", time.perf_counter() - started)
        at_terminal = dict(zip(took, states, strict=True))
        out = []
        for i, txn in enumerate(txns):
            if i not in cards:
                out.append(Applied(txn, Status.CONFLICT, owner=bytes(owners[i] or b"").decode()))
                continue
            kind, value = cards[i]
            status = Status.LATE if kind == b"lost" else STATUS[kind]
            if status is Status.DONE:
                out.append(Applied(txn, status, record=ScoredRecord.from_bytes(value)))
            elif status is Status.LATE:
                out.append(Applied(txn, status, newest=NEWEST.unpack(value)[0]))
            else:
                seen = at_terminal[i]
                out.append(
                    Applied(
                        txn, status, state=reply_state(seen[: SUMS.size], value, seen[SUMS.size :])
                    )
                )
        return out

    async def claim(self, txns: Sequence[Transaction]) -> list[bytes | None]:
        """Step 0: each transaction id claimed for its card unless already claimed; the
        card it belonged to before (None: it is new), per transaction."""
        ttl, keys = self.scored_ttl_seconds, self.keys
        return (
            await self._send(
                lambda: [
                    ("EVALSHA", self._shas["claim"], 1, keys.claim(txn.txn_id), txn.card_id, ttl)
                    for txn in txns
                ]
            )
            if txns
            else []
        )

    async def release(self, txns: Sequence[Transaction]) -> None:
        """Give back the claims of ``txns`` (still their cards')."""
        keys = self.keys
        await self._send(
            lambda: [
                ("EVALSHA", self._shas["release"], 1, keys.claim(txn.txn_id), txn.card_id)
                for txn in txns
            ]
        )

    async def card_side(self, txns: Sequence[Transaction]) -> list[tuple[bytes, bytes]]:
        """Step 1 alone: each transaction at its card; (status, card bytes or record or
        newest time) per transaction. (:meth:`apply` runs both steps; the tests run this
        one alone to stand for a process that died between them.)"""
        keys = self.keys
        return await self._per_slot(
            "card",
            txns,
            lambda t: (keys.card(t.card_id), keys.scored_by_card(t.card_id, t.txn_id)),
            lambda chunk: b"".join(card_bytes.RECORD.pack(*card.record(t)) for t in chunk),
        )

    async def terminal_side(self, txns: Sequence[Transaction]) -> list[bytes]:
        """Step 2: each transaction (taken by its card) at its terminal, at most once; the
        window sums and fraud entries it was counted on, per transaction."""
        keys = self.keys
        return await self._per_slot(
            "terminal",
            txns,
            lambda t: (
                keys.term(t.terminal_id),
                keys.fraud(t.terminal_id),
                keys.applied(t.terminal_id, t.txn_id),
            ),
            lambda chunk: b"".join(
                _BUCKETS.pack(*terminal.current_buckets(t.event_time)) for t in chunk
            ),
        )

    async def _per_slot(
        self,
        script: str,
        txns: Sequence[Transaction],
        keys_of: Callable[[Transaction], tuple[str, ...]],
        pack: Callable[[Sequence[Transaction]], bytes],
    ) -> list[Any]:
        """Run ``script`` for ``txns``, one call per slot (up to :data:`SCRIPT_BATCH`
        transactions, in their order), all sent at once; the replies in the
        transactions' order."""
        if not txns:
            return []
        by_slot: dict[int, list[int]] = {}
        all_keys = [keys_of(txn) for txn in txns]
        for i, keys in enumerate(all_keys):
            by_slot.setdefault(key_slot(keys[0].encode()), []).append(i)
        calls = [
            members[at : at + SCRIPT_BATCH]
            for members in by_slot.values()
            for at in range(0, len(members), SCRIPT_BATCH)
        ]

        def commands() -> list[Sequence[object]]:
            sha = self._shas[script]
            out: list[Sequence[object]] = []
            for call in calls:
                keys = [key for i in call for key in all_keys[i]]
                out.append(("EVALSHA", sha, len(keys), *keys, pack([txns[i] for i in call])))
            return out

        replies = await self._send(commands)
        out: list[Any] = [None] * len(txns)
        for call, reply in zip(calls, replies, strict=True):
            for i, one in zip(call, reply, strict=True):
                out[i] = one
        return out

    async def _send(self, commands: Callable[[], Sequence[Sequence[object]]]) -> list[Any]:
        """The replies of ``commands()``, in order, each command sent to the master of its
        first key's slot: per node one packed write, then its replies read on that
        connection. On any error the commands are built again (the scripts reloaded if
        lost) and sent through the cluster pipeline."""
        await self._ensure_scripts()
        await self.client.initialize()
        try:
            return await send_to_masters(self.client, commands())
        except (RedisError, RedisClusterException, OSError) as error:
            if isinstance(error, NoScriptError):
                self._stale = True
            log.info("cluster fast path failed (%s); through the cluster pipeline", error)
        return await self.through_pipeline(commands)

    async def through_pipeline(
        self, commands: Callable[[], Sequence[Sequence[object]]]
    ) -> list[Any]:
        """:meth:`_send` through redis-py's cluster pipeline (its fallback): it follows
        redirections and refreshes the slot map; lost scripts are loaded again and the
        commands sent once more (every command here is safe to repeat)."""
        for attempt in range(2):
            await self._ensure_scripts(reload=attempt > 0)
            pipe = self.client.pipeline(transaction=False)
            for command in commands():
                pipe.execute_command(*command)
            replies: list[Any] = await pipe.execute(raise_on_error=False)
            if not any(isinstance(r, NoScriptError) for r in replies):
                break
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies

    def save(self, scored: Sequence[tuple[Applied, ScoredRecord]]) -> Coroutine[Any, Any, None]:
        """Pack the records at once, send them when awaited: the records, then (once they
        are written) the ``applied`` keys' grace."""
        keys, ttl = self.keys, self.scored_ttl_seconds
        writes = [
            ("SET", keys.scored_by_card(r.card_id, r.txn_id), b"D" + r.to_bytes(), "EX", ttl)
            for _, r in scored
        ]
        graces = [
            ("EXPIRE", keys.applied(r.terminal_id, r.txn_id), APPLIED_GRACE_SECONDS)
            for _, r in scored
        ]

        async def send() -> None:
            if not writes:
                return
            started = time.perf_counter()
            await self._send(lambda: writes)
            await self._send(lambda: graces)
            if self.observe is not None:
                self.observe("pipeline", time.perf_counter() - started)

        return send()

    async def peek_many(self, txns: Sequence[Transaction]) -> list[EntityState]:
        """Each transaction's card (a GET in its slot) and terminal (a read-only script in
        its slot), all sent at once."""
        if not txns:
            return []
        keys = self.keys

        def commands() -> list[Sequence[object]]:
            out: list[Sequence[object]] = []
            sha = self._shas["peek_terminal"]
            for txn in txns:
                out += (
                    ("GET", keys.card(txn.card_id)),
                    (
                        "EVALSHA",
                        sha,
                        2,
                        keys.term(txn.terminal_id),
                        keys.fraud(txn.terminal_id),
                        *terminal.current_buckets(txn.event_time),
                    ),
                )
            return out

        replies = await self._send(commands)
        return [
            reply_state(sums, blob or b"", frauds)
            for blob, (sums, frauds) in zip(replies[0::2], replies[1::2], strict=True)
        ]

    async def scored_many(
        self,
        txn_ids: Sequence[str],
        card_ids: Sequence[str | None] | None = None,
    ) -> list[ScoredRecord | None]:
        """The saved records, read beside their cards; a transaction whose card is not
        given is found through its claim (one more round trip for those).

        Parameters
        ----------
        txn_ids
            The transactions' ids.
        card_ids
            Per id, its card or None (as long as ``txn_ids``); None: no card known for any.
        """
        if not txn_ids:
            return []
        cards: list[str | None] = list(card_ids) if card_ids is not None else [None] * len(txn_ids)
        started = time.perf_counter()
        unknown = [i for i, card_id in enumerate(cards) if card_id is None]
        if unknown:
            found = await self._mget([self.keys.claim(txn_ids[i]) for i in unknown])
            for i, raw in zip(unknown, found, strict=True):
                cards[i] = None if raw is None else bytes(raw).decode()
        wanted = [i for i, card_id in enumerate(cards) if card_id is not None]
        replies = await self._mget(
            [self.keys.scored_by_card(str(cards[i]), txn_ids[i]) for i in wanted]
        )
        if self.observe is not None:
            self.observe("pipeline", time.perf_counter() - started)
        records: list[ScoredRecord | None] = [None] * len(txn_ids)
        for i, raw in zip(wanted, replies, strict=True):
            records[i] = saved_record(raw)
        return records

    async def _mget(self, keys: list[str]) -> list[Any]:
        return await self._send(lambda: [("GET", key) for key in keys]) if keys else []

    async def health(self) -> tuple[int, int]:
        """Memory in use (bytes) and keys, summed over the cluster's primaries."""
        info: Any = await self.client.info("memory", target_nodes=RedisCluster.PRIMARIES)
        sizes: Any = await self.client.dbsize(target_nodes=RedisCluster.PRIMARIES)
        used = (
            sum(int(one["used_memory"]) for one in info.values())
            if isinstance(info, dict) and "used_memory" not in info
            else int(info["used_memory"])
        )
        keys = sum(sizes.values()) if isinstance(sizes, dict) else int(sizes)
        return used, keys
