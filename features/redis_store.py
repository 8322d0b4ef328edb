"""The Redis FeatureStore used in production: one round trip per batch.

Keys carry the feature-set version, so a new feature set never reads old
state, and the hash tag of their entity (:class:`features.keys.KeyLayout`):

- ``card``: the card's history bytes (:func:`features.card_bytes.append`);
- ``term``: a fixed-size string: per window, the newest bucket,
  its window sum and a ring of bucket counts, changed in place;
- ``fraud``: a hash, transaction id -> (transaction time, label arrival);
- ``scored``: ``P`` and where the state the transaction was applied
  on is (its card's length and dropped count then, its card id, its window
  sums and fraud entries), until ``D`` and its saved
  :class:`~features.store.ScoredRecord` replace it. It is under the
  transaction id: the same id on another card is a ``CONFLICT``.

This store is for one Redis; :mod:`features.redis_cluster_store` splits the
same work by entity for a Redis Cluster.

:meth:`RedisFeatureStore.apply` runs a Lua script (:mod:`features.redis_lua`)
over each :data:`SCRIPT_BATCH` transactions (their keys declared), all
pipelined in a single round trip. For each transaction, atomically, the
script checks it was not applied before, checks its lateness, appends the
card record (dropping stale ones), counts the terminal buckets, sums the
windows, and leaves the ``P`` marker, or changes nothing. The vector is
computed in Python by the pure :func:`features.vector.view`; the script
only moves bytes and adds counters, so the feature logic has one
definition. :meth:`save` writes the records (one more round trip, after
the scores are known).

Everything expires once it can no longer matter: a card after the horizon
plus the allowed lateness plus a day, a terminal likewise (plus one bucket of
its longest window: its expiry is renewed once per such bucket), a scored
record after ``scored_ttl_seconds`` (labels are not expected later than that).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError

from features import card, terminal
from features.events import Label, Transaction
from features.keys import KeyLayout
from features.redis_lua import scripts
from features.redis_mux import Mux
from features.redis_wire import (
    applied_from_reply,
    chunks,
    pack_apply,
    pack_command,
    reply_state,
    saved_record,
)
from features.store import Applied, ScoredRecord
from features.vector import FEATURE_SET_VERSION, EntityState

_DAY = 86400

#: Transactions per script call: long enough to amortise the call, short
#: enough that Redis is never blocked for more than about a millisecond.
SCRIPT_BATCH = 32


class RedisFeatureStore:
    """:class:`~features.store.FeatureStore` over a ``redis.asyncio`` client.

    Parameters
    ----------
    client
        The Redis client whose connection pool the store uses (closed by :meth:`close`).
    key_prefix
        The first part of every key (:class:`features.keys.KeyLayout`); no ``{`` or ``}``.
    allowed_lateness
        Seconds a transaction may be behind its card's newest event time and still be
        applied (older ones come back ``LATE``).
    scored_ttl_seconds
        Seconds a transaction's ``scored`` key (pending marker, then saved record) is
        kept: labels arriving later find no record.
    observe
        Called with (operation, seconds) after each round trip, for metrics; None: not
        observed.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        key_prefix: str,
        *,
        allowed_lateness: float = 3600.0,
        scored_ttl_seconds: int = 90 * _DAY,
        observe: Callable[[str, float], None] | None = None,
    ) -> None:
        self.client = client
        #: Called with (operation, seconds) after each round trip, for metrics.
        self.observe = observe
        self.key_prefix = key_prefix
        self.allowed_lateness = allowed_lateness
        self.scored_ttl_seconds = scored_ttl_seconds
        self.keys = KeyLayout(key_prefix, FEATURE_SET_VERSION)
        self.card_ttl_seconds = int(card.HORIZON_SECONDS + allowed_lateness) + _DAY
        longest = max(terminal.WINDOWS.values())
        self.terminal_ttl_seconds = (
            int(longest + allowed_lateness) + _DAY + int(terminal.BUCKET_SECONDS[-1])
        )
        self._scripts = scripts(
            allowed_lateness=allowed_lateness,
            card_ttl=self.card_ttl_seconds,
            term_ttl=self.terminal_ttl_seconds,
            scored_ttl=scored_ttl_seconds,
            fraud_ttl=int(2 * longest) + _DAY,
        )
        self._shas: dict[str, str] = {}
        #: Redis lost the scripts: load them again (the old SHAs stay until then).
        self._stale = False
        #: The shared connection reads go through (:meth:`multiplex_reads`); None: the pool.
        self.mux: Mux | None = None

    def multiplex_reads(self) -> bool:
        """Send the read-only peeks of every caller on one shared connection
        (:mod:`features.redis_mux`) instead of a pooled one each: the scoring API's reads.
        False (and nothing changed) where that connection cannot be made (TLS, a Unix
        socket, a cluster)."""
        self.mux = Mux.from_client(self.client)
        return self.mux is not None

    @classmethod
    def from_url(cls, url: str, key_prefix: str, **options: Any) -> RedisFeatureStore:
        """A store with its own connection pool to ``url``.

        Parameters
        ----------
        url
            The Redis URL (``redis://host:port/db``).
        key_prefix
            The first part of every key, as for the class.
        options
            The class's keyword options (``allowed_lateness``, ``scored_ttl_seconds``,
            ``observe``).
        """
        return cls(aioredis.Redis.from_url(url), key_prefix, **options)

    def _peek_keys(self, txn: Transaction) -> list[str]:
        keys = self.keys
        return [keys.card(txn.card_id), keys.term(txn.terminal_id), keys.fraud(txn.terminal_id)]

    def _apply_keys(self, txns: Sequence[Transaction]) -> list[str]:
        """Per transaction its card, scored, term and fraud keys."""
        keys, out = self.keys, list[str]()
        for txn in txns:
            out += (
                keys.card(txn.card_id),
                keys.scored(txn.txn_id),
                keys.term(txn.terminal_id),
                keys.fraud(txn.terminal_id),
            )
        return out

    async def apply(self, txns: Sequence[Transaction]) -> list[Applied]:
        return [one async for part in self.apply_parts([txns]) for one in part]

    def save(self, scored: Sequence[tuple[Applied, ScoredRecord]]) -> Coroutine[Any, Any, None]:
        """Pack the records at once, send them when awaited.

        Packing them before the caller awaits lets it drop ``scored`` (and the
        states in it) while the save is still in flight.
        """
        keys = [self.keys.scored(record.txn_id) for _, record in scored]
        return self._save(keys, [b"D" + record.to_bytes() for _, record in scored])

    async def _save(self, keys: list[str], args: list[Any]) -> None:
        if keys:
            started = time.perf_counter()
            await self._send(lambda: [("EVALSHA", self._shas["save"], len(keys), *keys, *args)])
            if self.observe is not None:
                self.observe("pipeline", time.perf_counter() - started)

    async def apply_parts(
        self, parts: Sequence[Sequence[Transaction]]
    ) -> AsyncIterator[list[Applied]]:
        """:meth:`apply` for consecutive parts, yielding each part as soon as it is applied.

        Parts go over one connection, each sent as soon as the previous one's
        replies are in: the caller scores part ``k`` while Redis applies part
        ``k + 1`` (Redis answers a burst of commands only once it has run them
        all, so sending every part at once would not overlap).
        """
        done = 0
        while done < len(parts):
            await self._ensure_scripts()
            conn = await self.client.connection_pool.get_connection()
            in_flight = 0
            try:
                in_flight = await self._send_part(conn, parts[done])
                while done < len(parts):
                    replies = []
                    started = time.perf_counter()
                    for _ in range(in_flight):
                        replies += await conn.read_response()
                    if self.observe is not None:
                        self.observe("apply", time.perf_counter() - started)
                    in_flight = 0
                    part = parts[done]
                    done += 1
                    if done < len(parts):
                        in_flight = await self._send_part(conn, parts[done])
                    yield [
                        applied_from_reply(txn, reply)
                        for txn, reply in zip(part, replies, strict=True)
                    ]
            except NoScriptError:  # Redis lost the scripts: load them, resend what is left
                self._stale = True
                in_flight = 1
            finally:
                if in_flight:  # replies may be left unread: never reuse this connection
                    await conn.disconnect()
                await self.client.connection_pool.release(conn)

    async def _send_part(self, conn: Any, part: Sequence[Transaction]) -> int:
        """Send the apply scripts for ``part``; how many replies to read."""
        commands = [
            (
                "EVALSHA",
                self._shas["apply"],
                4 * len(chunk),
                *self._apply_keys(chunk),
                pack_apply(chunk),
            )
            for chunk in chunks(part, SCRIPT_BATCH)
        ]
        await conn.send_packed_command(b"".join([pack_command(c) for c in commands]))
        return len(commands)

    async def _ensure_scripts(self, reload: bool = False) -> None:
        """Make sure the scripts are loaded (again, with ``reload``, or once Redis was
        found to have lost them)."""
        if reload or self._stale or not self._shas:
            await self._load_scripts()

    async def _load_scripts(self) -> None:
        """Load every script, then publish their SHAs at once: a request running beside
        the load never sees only some of them (a missing SHA would fail it with a
        ``KeyError``)."""
        shas = {name: await self.client.script_load(text) for name, text in self._scripts.items()}
        self._shas, self._stale = shas, False

    async def peek(self, txn: Transaction) -> EntityState:
        [state] = await self.peek_many([txn])
        return state

    async def peek_many(self, txns: Sequence[Transaction]) -> list[EntityState]:
        """:meth:`peek` for many transactions in one round trip (a redis-py pipeline of as
        many commands would take 30 % of the API's batch scoring)."""
        if not txns:
            return []

        def commands() -> list[Sequence[object]]:
            return [
                (
                    "EVALSHA",
                    self._shas["peek"],
                    3,
                    *self._peek_keys(txn),
                    *terminal.current_buckets(txn.event_time),
                )
                for txn in txns
            ]

        exchange = self._pooled if self.mux is None else self._shared
        return [reply_state(*reply) for reply in await self._retrying(commands, exchange)]

    async def _send(self, commands: Callable[[], Sequence[Sequence[object]]]) -> list[Any]:
        """The replies of ``commands()``: packed (:func:`pack_command`) and sent at once on
        one pooled connection, read back in order (:meth:`_retrying`)."""
        return await self._retrying(commands, self._pooled)

    async def _retrying(
        self,
        commands: Callable[[], Sequence[Sequence[object]]],
        exchange: Callable[[Sequence[Sequence[object]]], Awaitable[list[Any]]],
    ) -> list[Any]:
        """``exchange(commands())``. Should Redis have lost its scripts (a restart, ``SCRIPT
        FLUSH``) or the connection have dropped, the scripts are loaded again and the
        commands built and sent again, once; every command here is safe to repeat (apply
        is idempotent, save overwrites, peeks read)."""
        for attempt in range(2):
            await self._ensure_scripts(reload=attempt > 0)
            try:
                return await exchange(commands())
            except (NoScriptError, RedisConnectionError):  # scripts lost, or a connection
                if attempt:  # dropped while idle: once more, on a new one
                    raise
        raise AssertionError("unreachable")

    async def _pooled(self, built: Sequence[Sequence[object]]) -> list[Any]:
        """The replies of ``built`` on a connection of the pool."""
        pool = self.client.connection_pool
        conn = await pool.get_connection()
        replies: list[Any] = []
        try:
            await conn.send_packed_command(b"".join([pack_command(c) for c in built]))
            for _ in built:
                replies.append(await conn.read_response())
            return replies
        finally:
            if len(replies) < len(built):  # replies left unread: never reuse it
                await conn.disconnect()
            await pool.release(conn)

    async def _shared(self, built: Sequence[Sequence[object]]) -> list[Any]:
        """The replies of ``built`` on the shared connection (:meth:`multiplex_reads`)."""
        assert self.mux is not None
        return await self.mux.call(b"".join([pack_command(c) for c in built]), len(built))

    async def record_fraud(self, record: ScoredRecord, label: Label) -> None:
        """:meth:`features.store.FeatureStore.record_fraud` (one round trip)."""
        await self.record_frauds([(record, label)])

    async def record_frauds(self, frauds: Sequence[tuple[ScoredRecord, Label]]) -> None:
        if not frauds:
            return
        keys = self.keys
        await self._send(
            lambda: [
                (
                    "EVALSHA",
                    self._shas["fraud"],
                    2,
                    keys.fraud(record.terminal_id),
                    keys.term(record.terminal_id),
                    record.txn_id,
                    terminal.pack_fraud(record.event_time, label.event_time),
                )
                for record, label in frauds
            ]
        )

    async def scored(self, txn_id: str, card_id: str | None = None) -> ScoredRecord | None:
        """:meth:`features.store.FeatureStore.scored`."""
        [record] = await self.scored_many([txn_id], [card_id])
        return record

    async def scored_many(
        self,
        txn_ids: Sequence[str],
        card_ids: Sequence[str | None] | None = None,
    ) -> list[ScoredRecord | None]:
        """The saved records (one MGET); one of another card than given is None.

        Parameters
        ----------
        txn_ids
            The transactions' ids.
        card_ids
            Per id, its card or None (as long as ``txn_ids``); None: no card known for any.
        """
        if not txn_ids:
            return []
        started = time.perf_counter()
        replies = await self._mget([self.keys.scored(txn_id) for txn_id in txn_ids])
        if self.observe is not None:
            self.observe("pipeline", time.perf_counter() - started)
        records = [saved_record(raw) for raw in replies]
        if card_ids is None:
            return records
        return [
            None if r is None or (c is not None and r.card_id != c) else r
            for r, c in zip(records, card_ids, strict=True)
        ]

    async def _mget(self, keys: list[str]) -> list[Any]:
        """The values of ``keys`` (one MGET: a pipeline of GETs parses a reply each)."""
        return list(await self.client.mget(keys)) if keys else []

    async def health(self) -> tuple[int, int]:
        """Redis's memory in use (bytes) and its number of keys."""
        info: Any = await self.client.info("memory")
        return int(info["used_memory"]), int(await self.client.dbsize())

    async def close(self) -> None:
        if self.mux is not None:
            await self.mux.close()
        await self.client.aclose()
