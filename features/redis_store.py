"""The Redis FeatureStore used in production: one round trip per batch.

Keys carry the feature-set version, so a new feature set never reads old
state (``{prefix}:v{version}:...``):

- ``card:{card_id}``: the card's history bytes (:mod:`features.card`);
- ``term:{terminal_id}``: a hash, per window: packed bucket counts, newest bucket, its sum;
- ``fraud:{terminal_id}``: a hash, transaction id -> (transaction time, label arrival);
- ``scored:{txn_id}``: ``P`` and where the state the transaction was applied
  on is (its card's length then, its window sums and fraud entries), until
  ``D`` and its saved :class:`~features.store.ScoredRecord` replace it.

:meth:`RedisFeatureStore.apply` runs a Lua script over each
:data:`SCRIPT_BATCH` transactions, all pipelined in a single round trip. For
each transaction, atomically, the script checks it was not applied before,
checks its lateness, appends the card record, counts the terminal buckets,
sums the windows, and leaves the ``P`` marker, or changes nothing. The
marker points into the card's bytes rather than copying them: records stay
in place until they are compacted, and a card is compacted only when none of
its transactions is unsaved (its header counts them). The
vector is computed in Python by the pure :func:`features.vector.view`; the
script only moves bytes and adds counters, so the feature logic has one
definition. :meth:`save` writes the
records and compacts cards (one more round trip, after the scores are known).

Everything expires once it can no longer matter: a card after the horizon
plus the allowed lateness plus a day, a terminal likewise, a scored record
after ``scored_ttl_seconds`` (labels are not expected later than that).
"""

from __future__ import annotations

import struct
import time
from bisect import bisect_left
from collections.abc import AsyncIterator, Callable, Sequence
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
_BUCKETS = struct.Struct("<iii")
_NEWEST = struct.Struct("<d")
#: What the scripts put before a card's bytes: their length and the window sums.
_STATE_HEADER = struct.Struct(f"<I{len(terminal.WINDOWS)}i")

#: Shared by both scripts: window sums (and each window's newest bucket) of
#: ``term_key`` for a transaction whose current bucket per window is in
#: ``curs``; the fraud entries of ``fraud_key`` not below the floor. Mirrors
#: :func:`features.terminal.window_counts` and :func:`features.terminal.fraud_floor`.
#: Per window ``i`` the terminal hash keeps ``b<i>``: the non-empty buckets
#: as sorted (bucket, count) int32 pairs, none older than :data:`KEEP` behind
#: ``n<i>``: the newest bucket; and ``s<i>``: the window sum for ``n<i>``,
#: kept exact as late transactions add to covered buckets. An in-order
#: transaction reads one HMGET and touches only the last pair.
_TERMINAL_LUA = """
-- the sum of the counts of the packed buckets in [low, high)
local function range_sum(packed, low, high)
  local total = 0
  if not packed then return 0 end
  for pos = 1, #packed - 7, 8 do
    local b = struct.unpack('<i', packed, pos)
    if b >= high then break end
    if b >= low then total = total + struct.unpack('<i', packed, pos + 4) end
  end
  return total
end

-- the packed buckets with one more in bucket cur, and those older than keep_from dropped
local function increment(packed, cur, keep_from)
  if not packed or #packed < 8 then return struct.pack('<ii', cur, 1) end
  local start = 1
  while start <= #packed - 7 and struct.unpack('<i', packed, start) < keep_from do
    start = start + 8
  end
  if start > 1 then packed = string.sub(packed, start) end
  local pos = #packed - 7
  while pos >= 1 and struct.unpack('<i', packed, pos) > cur do pos = pos - 8 end
  if pos >= 1 and struct.unpack('<i', packed, pos) == cur then
    local count = struct.unpack('<i', packed, pos + 4)
    return string.sub(packed, 1, pos + 3) .. struct.pack('<i', count + 1)
           .. string.sub(packed, pos + 8)
  end
  return string.sub(packed, 1, pos + 7) .. struct.pack('<ii', cur, 1)
         .. string.sub(packed, pos + 8)
end

local function terminal_state(term_key, fraud_key, curs, write)
  local sums, newest, updates, advanced = {}, {}, {}, false
  local meta = redis.call('HMGET', term_key, 'n1', 's1', 'b1', 'n2', 's2', 'b2', 'n3', 's3', 'b3',
                         'f')
  for i = 1, NWIN do
    local cur = curs[i]
    local stored, cached, packed = tonumber(meta[3 * i - 2]), tonumber(meta[3 * i - 1]),
                                   meta[3 * i]
    local known = cur
    if stored and stored > cur then known = stored end
    local total = 0
    if stored == cur and cached then
      total = cached
    else
      total = range_sum(packed, math.max(cur - BUCKETS, known - KEEP), cur)
    end
    sums[i], newest[i] = total, known
    if write then
      updates[#updates + 1] = 'b' .. i
      updates[#updates + 1] = increment(packed, cur, known - KEEP)
      if cur == known and stored ~= cur then
        updates[#updates + 1] = 'n' .. i
        updates[#updates + 1] = cur
        updates[#updates + 1] = 's' .. i
        updates[#updates + 1] = total
        advanced = true
      elseif cur < known and cur >= known - BUCKETS then
        updates[#updates + 1] = 's' .. i
        updates[#updates + 1] = cached + 1
      end
    end
  end
  if write then redis.call('HSET', term_key, unpack(updates)) end
  local floor = (newest[NWIN] - KEEP) * LAST_BUCKET_SECONDS
  local frauds = {}
  local entries = {}
  if meta[10] then entries = redis.call('HGETALL', fraud_key) end  -- 'f': it has frauds
  for j = 2, #entries, 2 do
    if struct.unpack('<d', entries[j]) >= floor then
      frauds[#frauds + 1] = entries[j]
    elseif write then
      redis.call('HDEL', fraud_key, entries[j - 1])
    end
  end
  return sums, newest, frauds, advanced
end
"""

#: ARGV[1]: the key base; ARGV[2]: the transactions, packed by
#: :func:`_pack_apply` (record, current buckets, card, terminal and
#: transaction ids). Keys are derived in the script (a standalone Redis; for
#: Redis Cluster they would need one hash tag). One reply per transaction.
_APPLY_LUA = _TERMINAL_LUA + """
local base = ARGV[1]

-- the state a pending transaction was applied on: its card's records up to
-- its own, which stay in place until it is saved (the card is not compacted
-- while it has unsaved transactions)
local function pending_state(card_key, marker)
  local size = struct.unpack('<I', marker, 2)
  local head = string.sub(marker, 2, STATE_SIZE + 1)
  if size == 0 then return head .. string.sub(marker, STATE_SIZE + 2) end
  local records = redis.call('GETRANGE', card_key, HEADER_SIZE, size - 1)
  if #records ~= size - HEADER_SIZE then error('the state of a pending transaction is lost') end
  return head .. string.sub(marker, STATE_SIZE + 2, STATE_SIZE + 9) .. struct.pack('<I', 0)
         .. records .. string.sub(marker, STATE_SIZE + 10)
end

local function apply_one(rec, curs, card_id, term_id, txn_id)
  local card_key, term_key = base .. 'card:' .. card_id, base .. 'term:' .. term_id
  local txn_key = base .. 'scored:' .. txn_id
  local known = redis.call('GET', txn_key)
  if known then  -- 'D' + saved record, or 'P' + where its state is
    if string.sub(known, 1, 1) == 'D' then return {'done', string.sub(known, 2)} end
    return {'pending', pending_state(card_key, known)}
  end
  local t = struct.unpack('<d', rec)
  local blob = redis.call('GET', card_key) or ''
  local newest, unsaved = t, 0
  if blob ~= '' then
    newest, unsaved = struct.unpack('<dI', blob)
    if t < newest - LATENESS then return {'late', string.sub(blob, 1, 8)} end
    if t > newest then newest = t end
  end
  -- SET, not APPEND: an appended string keeps spare capacity (up to double)
  redis.call('SET', card_key, struct.pack('<dI', newest, unsaved + 1)
             .. string.sub(blob, HEADER_SIZE + 1) .. rec, 'EX', PENDING_CARD_TTL)
  local sums, term_newest, frauds, advanced = terminal_state(term_key,
                                                             base .. 'fraud:' .. term_id,
                                                             curs, true)
  if advanced then redis.call('EXPIRE', term_key, TERM_TTL) end
  local head = struct.pack(STATE_FORMAT, #blob, unpack(sums))
  frauds = table.concat(frauds)
  redis.call('SET', txn_key, 'P' .. head .. string.sub(blob, 1, 8) .. frauds, 'EX', SCORED_TTL)
  return {'new', head .. blob .. frauds}
end

local packed, pos, replies = ARGV[2], 1, {}
while pos <= #packed do
  local rec = string.sub(packed, pos, pos + RECORD_SIZE - 1)
  local b1, b2, b3, after = struct.unpack('<iii', packed, pos + RECORD_SIZE)
  local ids = {}
  pos = after
  for k = 1, 3 do
    local size = string.byte(packed, pos)
    ids[k] = string.sub(packed, pos + 1, pos + size)
    pos = pos + 1 + size
  end
  replies[#replies + 1] = apply_one(rec, {b1, b2, b3}, ids[1], ids[2], ids[3])
end
return replies
"""

#: KEYS: card, term, fraud. ARGV: current bucket per window. Writes nothing.
_PEEK_LUA = _TERMINAL_LUA + """
local curs = {}
for i = 1, NWIN do curs[i] = tonumber(ARGV[i]) end
local sums, newest, frauds = terminal_state(KEYS[2], KEYS[3], curs, false)
local blob = redis.call('GET', KEYS[1]) or ''
return struct.pack(STATE_FORMAT, #blob, unpack(sums)) .. blob .. table.concat(frauds)
"""

#: ARGV: the key base, the number of records n, n (txn id, card id, record)
#: triples, then (card id, expected length, compacted bytes) per compaction.
#: Each card's unsaved count drops by its transactions saved now (their
#: marker was ``P``); at 0 its expiry is the card's again. A card is only
#: compacted with nothing unsaved (no pending marker points into it) and
#: nothing appended since the compaction was computed.
_SAVE_LUA = """
local base, n = ARGV[1], tonumber(ARGV[2])
local saved = {}
for j = 0, n - 1 do
  local old = redis.call('SET', base .. 'scored:' .. ARGV[3 + 3 * j], 'D' .. ARGV[5 + 3 * j],
                         'EX', SCORED_TTL, 'GET')
  if old and string.sub(old, 1, 1) == 'P' then
    local key = base .. 'card:' .. ARGV[4 + 3 * j]
    saved[key] = (saved[key] or 0) + 1
  end
end
local unsaved = {}
for key, count in pairs(saved) do
  local header = redis.call('GETRANGE', key, 0, HEADER_SIZE - 1)
  if #header == HEADER_SIZE then
    local left = math.max(struct.unpack('<I', header, 9) - count, 0)
    redis.call('SETRANGE', key, 8, struct.pack('<I', left))
    if left == 0 then redis.call('EXPIRE', key, CARD_TTL) end
    unsaved[key] = left
  end
end
for c = 3 + 3 * n, #ARGV, 3 do
  local key = base .. 'card:' .. ARGV[c]
  local left = unsaved[key]
  if left == nil then
    local header = redis.call('GETRANGE', key, 0, HEADER_SIZE - 1)
    if #header == HEADER_SIZE then left = struct.unpack('<I', header, 9) end
  end
  if left == 0 and redis.call('STRLEN', key) == tonumber(ARGV[c + 1]) then
    redis.call('SET', key, ARGV[c + 2], 'KEEPTTL')
  end
end
return n
"""

#: KEYS: the terminal's fraud hash and its hash. ARGV: txn id, packed entry.
#: HSETNX: the first arrival counts, a repeated label changes nothing. The
#: terminal is flagged ``f`` so that apply reads its fraud entries.
_FRAUD_LUA = """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('EXPIRE', KEYS[1], FRAUD_TTL)
  redis.call('HSET', KEYS[2], 'f', 1)
  redis.call('EXPIRE', KEYS[2], TERM_TTL)
end
return 1
"""

#: Transactions per script call: long enough to amortise the call, short
#: enough that Redis is never blocked for more than about a millisecond.
SCRIPT_BATCH = 32


class RedisFeatureStore:
    """:class:`~features.store.FeatureStore` over a ``redis.asyncio`` client."""

    def __init__(
        self, client: aioredis.Redis, key_prefix: str, *,
        allowed_lateness: float = 3600.0, scored_ttl_seconds: int = 90 * _DAY,
        observe: Callable[[str, float], None] | None = None,
    ) -> None:
        self.client = client
        #: Called with (operation, seconds) after each round trip, for metrics.
        self.observe = observe
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
            "PENDING_CARD_TTL": max(self.card_ttl_seconds, scored_ttl_seconds),
            "TERM_TTL": int(max(terminal.WINDOWS.values()) + allowed_lateness) + _DAY,
            "SCORED_TTL": scored_ttl_seconds,
            "FRAUD_TTL": int(2 * max(terminal.WINDOWS.values())) + _DAY,
            "RECORD_SIZE": card.RECORD.size,
            "STATE_FORMAT": repr("<I" + "i" * len(terminal.WINDOWS)),
            "STATE_SIZE": _STATE_HEADER.size,
            "HEADER_SIZE": card.HEADER.size,
        }
        self._scripts = {
            "apply": _with_constants(_APPLY_LUA, constants),
            "peek": _with_constants(_PEEK_LUA, constants),
            "save": _with_constants(_SAVE_LUA, constants),
            "fraud": _with_constants(_FRAUD_LUA, constants),
        }
        self._shas: dict[str, str] = {}

    @classmethod
    def from_url(cls, url: str, key_prefix: str, **options: Any) -> RedisFeatureStore:
        """A store with its own connection pool to ``url``."""
        return cls(aioredis.Redis.from_url(url), key_prefix, **options)

    def key(self, kind: str, entity: str) -> str:
        """The key of ``entity``'s ``kind`` (card, term, fraud, scored)."""
        return f"{self._base}:{kind}:{entity}"

    def _keys(self, txn: Transaction) -> list[str]:
        return [self.key("card", txn.card_id), self.key("term", txn.terminal_id),
                self.key("fraud", txn.terminal_id)]

    async def apply(self, txns: Sequence[Transaction]) -> list[Applied]:
        return [one async for part in self.apply_parts([txns]) for one in part]

    async def save(self, scored: Sequence[tuple[Applied, ScoredRecord]]) -> None:
        last: dict[str, Applied] = {}
        for applied, _ in scored:
            last[applied.txn.card_id] = applied
        args: list[bytes | str | int] = [self._base + ":", len(scored)]
        for _, record in scored:
            args += (record.txn_id, record.card_id, record.to_bytes())
        for applied in last.values():
            args += self._compaction(applied)
        await self._execute(lambda pipe: pipe.evalsha(self._shas["save"], 0, *args))

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
            if not self._shas:
                await self._load_scripts()
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
                    yield [_applied(txn, reply) for txn, reply in zip(part, replies, strict=True)]
            except NoScriptError:  # Redis lost the scripts: load them, resend what is left
                self._shas.clear()
                in_flight = 1
            finally:
                if in_flight:  # replies may be left unread: never reuse this connection
                    await conn.disconnect()
                await self.client.connection_pool.release(conn)

    async def _send_part(self, conn: Any, part: Sequence[Transaction]) -> int:
        """Send the apply scripts for ``part``; how many replies to read."""
        commands = [("EVALSHA", self._shas["apply"], 0, self._base + ":", _pack_apply(chunk))
                    for chunk in _chunks(part, SCRIPT_BATCH)]
        await conn.send_packed_command(conn.pack_commands(commands))
        return len(commands)

    async def _load_scripts(self) -> None:
        for name, text in self._scripts.items():
            self._shas[name] = await self.client.script_load(text)

    def _compaction(self, applied: Applied) -> tuple[str, int, bytes] | tuple[()]:
        """(card id, expected length, compacted bytes) after ``applied``, if worth it."""
        if applied.state is None or applied.status is not Status.NEW:
            return ()
        before = applied.state.card
        newest = max(before.newest or applied.txn.event_time, applied.txn.event_time)
        cutoff = newest - self.allowed_lateness - card.HORIZON_SECONDS
        if bisect_left(before.times, cutoff) < COMPACT_AFTER_STALE:  # cheap test first
            return ()
        after = card.step(before, applied.txn)
        length = card.HEADER.size + card.RECORD.size * len(after.records)
        compacted = card.encode(card.compact(after, self.allowed_lateness))
        return applied.txn.card_id, length, compacted

    async def peek(self, txn: Transaction) -> EntityState:
        def build(pipe: Any) -> None:
            keys = self._keys(txn)
            pipe.evalsha(self._shas["peek"], len(keys), *keys,
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
                await self._load_scripts()
            pipe = self.client.pipeline(transaction=False)
            build(pipe)
            started = time.perf_counter()
            replies: list[Any] = await pipe.execute(raise_on_error=False)
            if self.observe is not None:
                self.observe("pipeline", time.perf_counter() - started)
            if not any(isinstance(r, NoScriptError) for r in replies):
                break
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies

    async def record_fraud(self, record: ScoredRecord, label: Label) -> None:
        packed = terminal.pack_fraud(record.event_time, label.event_time)
        await self._execute(lambda pipe: pipe.evalsha(
            self._shas["fraud"], 2, self.key("fraud", record.terminal_id),
            self.key("term", record.terminal_id), record.txn_id, packed))

    async def scored(self, txn_id: str) -> ScoredRecord | None:
        raw: Any = await self.client.get(self.key("scored", txn_id))
        if raw is None or raw[:1] != b"D":  # unknown, or applied but not saved yet
            return None
        return ScoredRecord.from_bytes(raw[1:])

    async def health(self) -> tuple[int, int]:
        """Redis's memory in use (bytes) and its number of keys."""
        info: Any = await self.client.info("memory")
        return int(info["used_memory"]), int(await self.client.dbsize())

    async def close(self) -> None:
        await self.client.aclose()


def _chunks(items: Sequence[Transaction], size: int) -> list[Sequence[Transaction]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _pack_apply(txns: Sequence[Transaction]) -> bytes:
    """The transactions for the apply script: record, buckets, then the three ids."""
    parts = []
    for txn in txns:
        parts.append(card.packed_record(txn))
        parts.append(_BUCKETS.pack(*terminal.current_buckets(txn.event_time)))
        for entity in (txn.card_id, txn.terminal_id, txn.txn_id):
            raw = entity.encode()
            parts.append(bytes((len(raw),)) + raw)
    return b"".join(parts)


def _with_constants(script: str, constants: dict[str, object]) -> str:
    lines = [f"local {name} = {value}" for name, value in constants.items()]
    return "\n".join(lines) + "\n" + script


def _state(packed: bytes) -> EntityState:
    """The state the scripts pack: card length, window sums, card bytes, fraud entries."""
    size, *sums = _STATE_HEADER.unpack_from(packed)
    at = _STATE_HEADER.size + size
    frauds = packed[at:]
    width = terminal.FRAUD.size
    return decode_state(memoryview(packed)[_STATE_HEADER.size:at], sums,
                        [frauds[i : i + width] for i in range(0, len(frauds), width)])


def _applied(txn: Transaction, reply: Sequence[Any]) -> Applied:
    status = Status(reply[0].decode())
    if status is Status.DONE:
        return Applied(txn, status, record=ScoredRecord.from_bytes(reply[1]))
    if status is Status.LATE:
        return Applied(txn, status, newest=_NEWEST.unpack(reply[1])[0])
    return Applied(txn, status, state=_state(reply[1]))
