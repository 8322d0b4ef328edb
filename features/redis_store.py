"""The Redis FeatureStore used in production: one round trip per batch.

Keys carry the feature-set version, so a new feature set never reads old
state (``{prefix}:v{version}:...``):

- ``card:{card_id}``: the card's history bytes (:mod:`features.card`);
- ``term:{terminal_id}``: a hash of bucket counters and each window's newest bucket;
- ``fraud:{terminal_id}``: a hash, transaction id -> (transaction time, label arrival);
- ``pending:{txn_id}``: the state a transaction was applied on, until its record is saved;
- ``scored:{txn_id}``: the saved :class:`~features.store.ScoredRecord`.

:meth:`RedisFeatureStore.apply` runs one Lua script per transaction, all
pipelined in a single round trip. Each script is atomic: it checks the
transaction was not applied before, checks its lateness, appends the card
record, counts the terminal buckets, sums the windows, and leaves the
``pending`` marker, or changes nothing. The vector is computed in Python by
the pure :func:`features.vector.view`; the script only moves bytes and adds
counters, so the feature logic has one definition. :meth:`save` writes the
records (a second pipelined round trip, after the scores are known).

Everything expires once it can no longer matter: a card after the horizon
plus the allowed lateness plus a day, a terminal likewise, a scored record
after ``scored_ttl_seconds`` (labels are not expected later than that).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from features import card, terminal
from features.events import Label, Transaction
from features.store import (
    COMPACT_AFTER_STALE,
    Applied,
    ScoredRecord,
    Status,
    decode_state,
)
from features.vector import FEATURE_SET_VERSION, EntityState

_DAY = 86400

#: Shared by both scripts: window sums (and each window's newest bucket) of
#: KEYS[2] for the transaction whose current buckets are ARGV[3..]; the fraud
#: entries of KEYS[3] that are not below the floor. Mirrors
#: :func:`features.terminal.window_counts` and :func:`features.terminal.fraud_floor`.
_TERMINAL_LUA = """
local function terminal_state(term_key, fraud_key, write)
  local sums, newest = {}, {}
  for i = 1, NWIN do
    local cur = tonumber(ARGV[2 + i])
    local stored = tonumber(redis.call('HGET', term_key, 'n' .. i))
    local known = cur
    if stored and stored > cur then known = stored end
    local low = math.max(cur - BUCKETS, known - KEEP)
    local total = 0
    if low < cur then
      local fields = {}
      for b = low, cur - 1 do fields[#fields + 1] = b * 4 + i end
      for _, v in ipairs(redis.call('HMGET', term_key, unpack(fields))) do
        if v then total = total + tonumber(v) end
      end
    end
    sums[i], newest[i] = total, known
    if write then
      redis.call('HINCRBY', term_key, cur * 4 + i, 1)
      if not stored or known > stored then redis.call('HSET', term_key, 'n' .. i, known) end
    end
  end
  local floor = (newest[NWIN] - KEEP) * LAST_BUCKET_SECONDS
  local frauds = {}
  local entries = redis.call('HGETALL', fraud_key)
  for j = 2, #entries, 2 do
    if struct.unpack('<d', entries[j]) >= floor then
      frauds[#frauds + 1] = entries[j]
    elseif write then
      redis.call('HDEL', fraud_key, entries[j - 1])
    end
  end
  return sums, newest, frauds
end
"""

#: KEYS: card, term, fraud, pending, scored. ARGV: record, time, current buckets.
_APPLY_LUA = _TERMINAL_LUA + """
local saved = redis.call('GET', KEYS[5])
if saved then return {'done', saved} end
local pending = redis.call('LRANGE', KEYS[4], 0, -1)
if #pending > 0 then
  table.insert(pending, 1, 'pending')
  return pending
end
local t = tonumber(ARGV[2])
local blob = redis.call('GET', KEYS[1])
if blob then
  local newest = struct.unpack('<d', blob)
  if t < newest - LATENESS then return {'late', string.sub(blob, 1, 8)} end
  if t > newest then redis.call('SETRANGE', KEYS[1], 0, struct.pack('<d', t)) end
  redis.call('APPEND', KEYS[1], ARGV[1])
else
  blob = ''
  redis.call('SET', KEYS[1], struct.pack('<d', t) .. ARGV[1])
end
redis.call('EXPIRE', KEYS[1], CARD_TTL)
local sums, newest, frauds = terminal_state(KEYS[2], KEYS[3], true)
if redis.call('HLEN', KEYS[2]) > CLEAN_ABOVE then
  for _, key in ipairs(redis.call('HKEYS', KEYS[2])) do
    local id = tonumber(key)
    if id then
      local w = id % 4
      if (id - w) / 4 < newest[w] - KEEP then redis.call('HDEL', KEYS[2], key) end
    end
  end
end
redis.call('EXPIRE', KEYS[2], TERM_TTL)
local state = {blob}
for i = 1, NWIN do state[#state + 1] = sums[i] end
for _, v in ipairs(frauds) do state[#state + 1] = v end
redis.call('RPUSH', KEYS[4], unpack(state))
redis.call('EXPIRE', KEYS[4], SCORED_TTL)
table.insert(state, 1, 'new')
return state
"""

#: KEYS: card, term, fraud. ARGV: unused, unused, current buckets. Writes nothing.
_PEEK_LUA = _TERMINAL_LUA + """
local sums, newest, frauds = terminal_state(KEYS[2], KEYS[3], false)
local state = {redis.call('GET', KEYS[1]) or ''}
for i = 1, NWIN do state[#state + 1] = sums[i] end
for _, v in ipairs(frauds) do state[#state + 1] = v end
return state
"""

#: KEYS: card. ARGV: expected length, compacted bytes. Only if nothing was appended since.
_COMPACT_LUA = """
if redis.call('STRLEN', KEYS[1]) == tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
  return 1
end
return 0
"""


class RedisFeatureStore:
    """:class:`~features.store.FeatureStore` over a ``redis.asyncio`` client."""

    def __init__(
        self, client: aioredis.Redis, key_prefix: str, *,
        allowed_lateness: float = 3600.0, scored_ttl_seconds: int = 90 * _DAY,
    ) -> None:
        self.client = client
        self.key_prefix = key_prefix
        self.allowed_lateness = allowed_lateness
        self.scored_ttl_seconds = scored_ttl_seconds
        self._base = f"{key_prefix}:v{FEATURE_SET_VERSION}"
        self.card_ttl_seconds = int(card.HORIZON_SECONDS + allowed_lateness) + _DAY
        constants = {
            "NWIN": len(terminal.WINDOWS),
            "BUCKETS": terminal.BUCKETS,
            "KEEP": terminal.KEEP_BUCKETS,
            "LAST_BUCKET_SECONDS": repr(terminal.BUCKET_SECONDS[-1]),
            "LATENESS": repr(float(allowed_lateness)),
            "CARD_TTL": self.card_ttl_seconds,
            "TERM_TTL": int(max(terminal.WINDOWS.values()) + allowed_lateness) + _DAY,
            "SCORED_TTL": scored_ttl_seconds,
            "CLEAN_ABOVE": len(terminal.WINDOWS) * (terminal.KEEP_BUCKETS + 3) + 8,
        }
        self._scripts = {
            "apply": _with_constants(_APPLY_LUA, constants),
            "peek": _with_constants(_PEEK_LUA, constants),
            "compact": _COMPACT_LUA,
        }
        self._shas: dict[str, str] = {}

    @classmethod
    def from_url(cls, url: str, key_prefix: str, **options: Any) -> RedisFeatureStore:
        """A store with its own connection pool to ``url``."""
        return cls(aioredis.Redis.from_url(url), key_prefix, **options)

    def key(self, kind: str, entity: str) -> str:
        """The key of ``entity``'s ``kind`` (card, term, fraud, pending, scored)."""
        return f"{self._base}:{kind}:{entity}"

    def _keys(self, txn: Transaction) -> list[str]:
        return [self.key("card", txn.card_id), self.key("term", txn.terminal_id),
                self.key("fraud", txn.terminal_id)]

    async def apply(self, txns: Sequence[Transaction]) -> list[Applied]:
        def build(pipe: Any) -> None:
            for txn in txns:
                keys = [*self._keys(txn), self.key("pending", txn.txn_id),
                        self.key("scored", txn.txn_id)]
                pipe.evalsha(self._shas["apply"], len(keys), *keys, card.packed_record(txn),
                             repr(txn.event_time), *terminal.current_buckets(txn.event_time))

        replies = await self._execute(build)
        return [_applied(txn, reply) for txn, reply in zip(txns, replies, strict=True)]

    async def save(self, scored: Sequence[tuple[Applied, ScoredRecord]]) -> None:
        last: dict[str, Applied] = {}
        for applied, _ in scored:
            last[applied.txn.card_id] = applied
        compactions = [c for c in map(self._compaction, last.values()) if c is not None]

        def build(pipe: Any) -> None:
            for _, record in scored:
                pipe.set(self.key("scored", record.txn_id), record.to_bytes(),
                         ex=self.scored_ttl_seconds)
                pipe.delete(self.key("pending", record.txn_id))
            for key, length, compacted in compactions:
                pipe.evalsha(self._shas["compact"], 1, key, length, compacted)

        await self._execute(build)

    def _compaction(self, applied: Applied) -> tuple[str, int, bytes] | None:
        """The card's compacted bytes after ``applied``, if worth writing."""
        if applied.state is None or applied.status is not Status.NEW:
            return None
        after = card.step(applied.state.card, applied.txn)
        if card.stale_count(after, self.allowed_lateness) < COMPACT_AFTER_STALE:
            return None
        length = card.HEADER.size + card.RECORD.size * len(after.records)
        compacted = card.encode(card.compact(after, self.allowed_lateness))
        return self.key("card", applied.txn.card_id), length, compacted

    async def peek(self, txn: Transaction) -> EntityState:
        def build(pipe: Any) -> None:
            keys = self._keys(txn)
            pipe.evalsha(self._shas["peek"], len(keys), *keys, "", "",
                         *terminal.current_buckets(txn.event_time))

        [reply] = await self._execute(build)
        return _state(reply)

    async def _execute(self, build: Callable[[Any], None]) -> list[Any]:
        """Build and run one pipeline: one round trip (scripts are loaded once, up front).

        Should Redis have lost its scripts (a restart, ``SCRIPT FLUSH``), they
        are loaded again and the batch re-run; every command in it is safe to
        repeat (apply is idempotent, save overwrites).
        """
        for attempt in range(2):
            if not self._shas or attempt:
                for name, text in self._scripts.items():
                    self._shas[name] = await self.client.script_load(text)
            pipe = self.client.pipeline(transaction=False)
            build(pipe)
            replies: list[Any] = await pipe.execute(raise_on_error=False)
            if not any(isinstance(r, NoScriptError) for r in replies):
                break
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies

    async def record_fraud(self, record: ScoredRecord, label: Label) -> None:
        key = self.key("fraud", record.terminal_id)
        pipe = self.client.pipeline(transaction=True)
        # HSETNX: the first arrival counts, a repeated label changes nothing.
        pipe.hsetnx(key, record.txn_id, terminal.pack_fraud(record.event_time, label.event_time))
        pipe.expire(key, int(2 * max(terminal.WINDOWS.values())) + _DAY)
        await pipe.execute()

    async def scored(self, txn_id: str) -> ScoredRecord | None:
        raw: Any = await self.client.get(self.key("scored", txn_id))
        return None if raw is None else ScoredRecord.from_bytes(raw)

    async def close(self) -> None:
        await self.client.aclose()


def _with_constants(script: str, constants: dict[str, object]) -> str:
    lines = [f"local {name} = {value}" for name, value in constants.items()]
    return "\n".join(lines) + "\n" + script


def _state(reply: Sequence[Any]) -> EntityState:
    windows = len(terminal.WINDOWS)
    return decode_state(reply[0], reply[1 : 1 + windows], reply[1 + windows :])


def _applied(txn: Transaction, reply: Sequence[Any]) -> Applied:
    status = Status(reply[0].decode())
    if status is Status.DONE:
        return Applied(txn, status, record=ScoredRecord.from_bytes(reply[1]))
    if status is Status.LATE:
        return Applied(txn, status, newest=card.HEADER.unpack(reply[1])[0])
    return Applied(txn, status, state=_state(reply[1:]))
