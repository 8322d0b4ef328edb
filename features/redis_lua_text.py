"""The Lua text of the Redis store's scripts: the terminal's and the card's arithmetic,
and the scripts built from them. :func:`features.redis_lua.scripts` prefixes each with its
constants (``NONE``, ``RING``, the TTLs...) as Lua locals; the layout of the bytes they
move is described in :mod:`features.redis_lua`."""

EMPTY_TERMINAL_LUA = """
local function empty_terminal()
  return string.char(0) .. string.rep(struct.pack('<iii', NONE, 0, 0), 3)
         .. string.rep(string.char(0), 4 * RING * 3)
end
"""

#: Shared by apply and peek: the window sums of ``term_key`` for a
#: transaction in buckets ``curs`` (one per window), counting it in when
#: ``write``; the terminal's fraud entries not below the floor
#: (:func:`features.terminal.fraud_floor`), pruning older ones when ``write``.
TERMINAL_LUA = (
    EMPTY_TERMINAL_LUA
    + """

-- byte offset (0-based) of older bucket b's count in window i's ring
local function slot(i, b)
  return TERM_HEAD + 4 * ((i - 1) * RING + b % RING)
end

-- the sum of window i's counts of older buckets [low, high)
local function range_sum(raw, i, low, high)
  local total = 0
  for b = low, high - 1 do total = total + struct.unpack('<i', raw, slot(i, b) + 1) end
  return total
end

-- window i moved on from bucket n (count c) to cur: the ring takes c for n
-- and 0 for the buckets between (their slots held buckets now too old)
local function advance(term_key, i, n, c, cur)
  if cur - n > RING then
    redis.call('SETRANGE', term_key, slot(i, 0), string.rep(string.char(0), 4 * RING))
    return
  end
  local values = struct.pack('<i', c) .. string.rep(string.char(0), 4 * (cur - n - 1))
  local fits = 4 * (RING - n % RING)
  redis.call('SETRANGE', term_key, slot(i, n), string.sub(values, 1, fits))
  if #values > fits then
    redis.call('SETRANGE', term_key, slot(i, 0), string.sub(values, fits + 1))
  end
end

-- window i for a transaction in bucket cur, when its newest bucket is n,
-- holding c transactions, and the window sum for a transaction in n is s:
-- the transaction's sum, the newest bucket known, then n, s and c after it
-- (older buckets are counted in the ring if write)
local function window(term_key, raw, i, cur, n, s, c, write)
  if n == NONE then return 0, cur, cur, 0, 1 end
  if cur == n then return s, n, n, s, c + 1 end
  if cur > n then
    local total = 0
    if cur - n <= BUCKETS then  -- [cur - BUCKETS, n]: s's window, moved on by cur - n buckets
      total = s + c - range_sum(raw, i, n - BUCKETS, cur - BUCKETS)
    end
    if write then advance(term_key, i, n, c, cur) end
    return total, cur, cur, total, 1
  end
  -- an older bucket than the newest: read (and count) it in the ring
  local total = range_sum(raw, i, math.max(cur - BUCKETS, n - KEEP), cur)
  if write and cur >= n - KEEP then
    local at = slot(i, cur)
    redis.call('SETRANGE', term_key, at, struct.pack('<i', struct.unpack('<i', raw, at + 1) + 1))
    if cur >= n - BUCKETS then s = s + 1 end
  end
  return total, n, n, s, c
end

-- window i's buckets [cur - offset - length, cur - offset) as stored before this
-- transaction (features.terminal.window_counts, DELAYED): the ring holds
-- [n - KEEP, n) and bucket n's count is c; nothing newer than n was counted
local function delayed_sum(raw, i, cur, n, c, offset, length)
  if n == NONE then return 0 end
  local low = math.max(cur - offset - length, math.max(n, cur) - KEEP)
  local high = cur - offset
  local total = range_sum(raw, i, low, math.min(high, n))
  if low <= n and n < high then total = total + c end
  return total
end

-- the three window sums, the three delayed ones and the fraud entries (concatenated)
local function terminal_state(term_key, fraud_key, cur1, cur2, cur3, write)
  local raw = redis.call('GET', term_key)
  if not raw then
    if not write then return 0, 0, 0, 0, 0, 0, '' end
    raw = empty_terminal()
    redis.call('SET', term_key, raw, 'EX', TERM_TTL)
  end
  local flag, n1, s1, c1, n2, s2, c2, n3, s3, c3 = struct.unpack('<Biiiiiiiii', raw)
  local t1, k1, m1, u1, v1 = window(term_key, raw, 1, cur1, n1, s1, c1, write)
  local t2, k2, m2, u2, v2 = window(term_key, raw, 2, cur2, n2, s2, c2, write)
  local t3, k3, m3, u3, v3 = window(term_key, raw, 3, cur3, n3, s3, c3, write)
  local curs, ns, cs = {cur1, cur2, cur3}, {n1, n2, n3}, {c1, c2, c3}
  local e1 = delayed_sum(raw, D1S, curs[D1S], ns[D1S], cs[D1S], D1O, D1L)
  local e2 = delayed_sum(raw, D2S, curs[D2S], ns[D2S], cs[D2S], D2O, D2L)
  local e3 = delayed_sum(raw, D3S, curs[D3S], ns[D3S], cs[D3S], D3O, D3L)
  if write then
    if m1 ~= n1 or u1 ~= s1 or v1 ~= c1 or m2 ~= n2 or u2 ~= s2 or v2 ~= c2
       or m3 ~= n3 or u3 ~= s3 or v3 ~= c3 then
      redis.call('SETRANGE', term_key, 1, struct.pack('<iiiiiiiii', m1, u1, v1, m2, u2, v2,
                                                      m3, u3, v3))
    end
    if m3 ~= n3 and n3 ~= NONE then redis.call('EXPIRE', term_key, TERM_TTL) end
  end
  if flag == 0 then return t1, t2, t3, e1, e2, e3, '' end
  local frauds, floor = {}, (k3 - KEEP) * LAST_BUCKET_SECONDS
  local entries = redis.call('HGETALL', fraud_key)
  for j = 2, #entries, 2 do
    if struct.unpack('<d', entries[j]) >= floor then
      frauds[#frauds + 1] = entries[j]
    elseif write then
      redis.call('HDEL', fraud_key, entries[j - 1])
    end
  end
  return t1, t2, t3, e1, e2, e3, table.concat(frauds)
end

-- the transaction counted at its terminal: its window sums (packed) and fraud entries
local function terminal_step(term_key, fraud_key, b1, b2, b3)
  local s1, s2, s3, e1, e2, e3, frauds = terminal_state(term_key, fraud_key, b1, b2, b3, true)
  return struct.pack('<iiiiii', s1, s2, s3, e1, e2, e3), frauds
end
"""
)

#: The card side of applying one transaction, shared by the scripts below.
CARD_LUA = """
local ROOM = string.rep(string.char(0), SLACK * RECORD_SIZE)

-- a redelivered transaction not saved yet: true and its card's records before its own
-- (from its marker: the card's newest time, dropped count and length then), or false and
-- the card's newest time if a record it could see was dropped since
-- (features.card_bytes.lost_since) or its card expired since
local function pending(card_key, marker, rec)
  local newest0, d0, n0 = struct.unpack('<dII', marker, 2)
  local blob = redis.call('GET', card_key)
  if not blob then return false, string.sub(marker, 2, 9) end
  local _, dropped, n, lost = struct.unpack('<dIId', blob)
  local own = d0 + n0 - dropped  -- where its own record is now
  if (dropped > d0 and lost >= struct.unpack('<d', rec) - HORIZON) or own < 0 or own >= n
     or string.sub(blob, HEADER_SIZE + RECORD_SIZE * own + 1,
                   HEADER_SIZE + RECORD_SIZE * (own + 1)) ~= rec then
    return false, string.sub(blob, 1, 8)
  end
  local before, from = '', math.max(d0 - dropped, 0)
  if n0 > 0 then
    before = struct.pack('<dIId', newest0, d0, own - from, 0) .. string.sub(
      blob, HEADER_SIZE + RECORD_SIZE * from + 1, HEADER_SIZE + RECORD_SIZE * own)
  end
  return true, before
end

-- features.card_bytes.append: the record into the card's room, or the card
-- rewritten without its stale records and with room again
local function append(card_key, blob, t, rec)
  if not blob then
    redis.call('SET', card_key, struct.pack('<dIId', t, 0, 1, 0) .. rec .. ROOM, 'EX', CARD_TTL)
    return
  end
  local newest, dropped, n, lost = struct.unpack('<dIId', blob)
  if t > newest then newest = t end
  local at = HEADER_SIZE + RECORD_SIZE * n
  if at < #blob then
    redis.call('SETRANGE', card_key, 0, struct.pack('<dII', newest, dropped, n + 1))
    redis.call('SETRANGE', card_key, at, rec)
    return
  end
  local cutoff, stale = newest - LATENESS - HORIZON, 0
  while stale < n do
    local when = struct.unpack('<d', blob, HEADER_SIZE + RECORD_SIZE * stale + 1)
    if when >= cutoff then break end
    if when > lost then lost = when end
    stale = stale + 1
  end
  -- SET, not APPEND: an appended string keeps spare capacity (up to double)
  redis.call('SET', card_key, struct.pack('<dIId', newest, dropped + stale, n - stale + 1, lost)
             .. string.sub(blob, HEADER_SIZE + RECORD_SIZE * stale + 1) .. rec .. ROOM,
             'EX', CARD_TTL)
end

-- the transaction (its card record rec) at its card, unless applied before (known: the
-- value of its scored key) or too late: 'done', its saved record | 'late', the card's
-- newest time | 'lost', the same for one applied before that lost a record it could see
-- (it is answered late, yet was counted) | 'pending', its card's records before it, its
-- marker | 'new', the card's bytes before it, the marker's head (the card's newest time,
-- dropped count and length before it). The caller writes the marker of a new one.
local function card_step(card_key, known, rec)
  if known then  -- 'D' + saved record, or 'P' + where its state is
    if string.sub(known, 1, 1) == 'D' then return 'done', string.sub(known, 2) end
    local ok, before = pending(card_key, known, rec)
    if not ok then return 'lost', before end
    return 'pending', before, known
  end
  local t = struct.unpack('<d', rec)
  local blob = redis.call('GETEX', card_key, 'EX', CARD_TTL)  -- its expiry renewed as it is read
  local head = struct.pack('<dII', t, 0, 0)
  if blob then
    head = string.sub(blob, 1, 16)
    if t < struct.unpack('<d', blob) - LATENESS then return 'late', string.sub(blob, 1, 8) end
  end
  append(card_key, blob, t, rec)
  return 'new', blob or '', head
end

"""

#: One Redis: each transaction at its card and its terminal at once. KEYS: per
#: transaction its card, scored, term and fraud keys (:class:`features.keys.KeyLayout`);
#: ARGV[1]: per transaction its card record, current buckets and card id
#: (``_pack_apply``). One reply per transaction: ``{'new' | 'pending', window sums, card
#: bytes before it, fraud entries}``, ``{'done', record}``, ``{'late', the card's newest
#: time}`` or ``{'conflict', the card its id belongs to}``. The marker holds the card id
#: and the terminal's side too: ``P``, its head, the card id (length first), window sums,
#: fraud entries. The scored key is the transaction id's: an id known on another card (in
#: its marker or its saved record) is a conflict.
APPLY_LUA = (
    TERMINAL_LUA
    + CARD_LUA
    + """
-- the card of a scored key's value: 'D' + record (ids after its 20-byte head, the
-- transaction's then the card's, each after its length) or 'P' + marker
local function owner_of(known)
  if string.sub(known, 1, 1) == 'D' then
    local at = 23 + string.byte(known, 22)
    return string.sub(known, at + 1, at + string.byte(known, at))
  end
  return string.sub(known, 19, 18 + string.byte(known, 18))
end

local packed, replies, pos = ARGV[1], {}, 1
for i = 1, #KEYS / 4 do
  local k = 4 * (i - 1)
  local rec = string.sub(packed, pos, pos + RECORD_SIZE - 1)
  local b1, b2, b3 = struct.unpack('<iii', packed, pos + RECORD_SIZE)
  local size = string.byte(packed, pos + RECORD_SIZE + 12)
  local card_id = string.sub(packed, pos + RECORD_SIZE + 13, pos + RECORD_SIZE + 12 + size)
  pos = pos + RECORD_SIZE + 13 + size
  local known = redis.call('GET', KEYS[k + 2])
  local owner = known and owner_of(known)
  if owner and owner ~= card_id then
    replies[i] = {'conflict', owner}
  else
    local kind, value, extra = card_step(KEYS[k + 1], known, rec)
    if kind == 'new' then
      local sums, frauds = terminal_step(KEYS[k + 3], KEYS[k + 4], b1, b2, b3)
      redis.call('SET', KEYS[k + 2], 'P' .. extra .. string.char(size) .. card_id .. sums
                 .. frauds, 'EX', SCORED_TTL)
      replies[i] = {'new', sums, value, frauds}
    elseif kind == 'pending' then
      local at = 19 + size
      replies[i] = {'pending', string.sub(extra, at, at + SUMS_SIZE - 1), value,
                    string.sub(extra, at + SUMS_SIZE)}
    else  -- done, late, or lost (late to the caller: counted at its terminal already)
      replies[i] = {kind == 'lost' and 'late' or kind, value}
    end
  end
end
return replies
"""
)

#: A cluster, the card side (one slot: its keys share the card's tag). KEYS: per
#: transaction its card and scored keys; ARGV[1]: their card records. One reply per
#: transaction: ``{'new', card bytes before it}``, ``{'pending', its card's records before
#: it}``, ``{'done', record}``, ``{'late', the card's newest time}`` or ``{'lost', the
#: same}`` (applied before, answered late: its terminal must still count it once). The
#: marker is ``P`` and its head: the terminal keeps its own (``TERMINAL_APPLY_LUA``).
CARD_APPLY_LUA = (
    CARD_LUA
    + """
local packed, replies = ARGV[1], {}
for i = 1, #KEYS / 2 do
  local rec = string.sub(packed, (i - 1) * RECORD_SIZE + 1, i * RECORD_SIZE)
  local kind, value, extra = card_step(KEYS[2 * i - 1], redis.call('GET', KEYS[2 * i]), rec)
  if kind == 'new' then redis.call('SET', KEYS[2 * i], 'P' .. extra, 'EX', SCORED_TTL) end
  replies[i] = {kind, value}
end
return replies
"""
)

#: A cluster, the terminal side (one slot: its keys share the terminal's tag), for
#: transactions their cards took (new or pending). KEYS: per transaction its term, fraud
#: and applied keys; ARGV[1]: their current buckets. Counts each at most once: the first
#: time, its window sums and fraud entries are kept under its applied key, and a repeat
#: returns them unchanged. One reply per transaction: the window sums then fraud entries.
TERMINAL_APPLY_LUA = (
    TERMINAL_LUA
    + """
local packed, replies = ARGV[1], {}
for i = 1, #KEYS / 3 do
  local k = 3 * (i - 1)
  local known = redis.call('GET', KEYS[k + 3])
  if not known then
    local sums, frauds = terminal_step(KEYS[k + 1], KEYS[k + 2],
                                       struct.unpack('<iii', packed, 12 * (i - 1) + 1))
    known = sums .. frauds
    redis.call('SET', KEYS[k + 3], known, 'EX', SCORED_TTL)
  end
  replies[i] = known
end
return replies
"""
)

#: KEYS: card, term, fraud. ARGV: current bucket per window. Writes nothing.
#: Returns the window sums, the card's bytes and the fraud entries.
PEEK_LUA = (
    TERMINAL_LUA
    + """
local s1, s2, s3, e1, e2, e3, frauds = terminal_state(
  KEYS[2], KEYS[3], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), false)
return {struct.pack('<iiiiii', s1, s2, s3, e1, e2, e3), redis.call('GET', KEYS[1]) or '', frauds}
"""
)

#: A cluster: ``PEEK_LUA`` at the terminal (its card is read on its own). KEYS: term, fraud.
PEEK_TERMINAL_LUA = (
    TERMINAL_LUA
    + """
local s1, s2, s3, e1, e2, e3, frauds = terminal_state(
  KEYS[1], KEYS[2], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), false)
return {struct.pack('<iiiiii', s1, s2, s3, e1, e2, e3), frauds}
"""
)

#: One Redis: KEYS: per record its scored key; ARGV: per record its value (``D`` +
#: record). Overwrites the ``P`` markers.
SAVE_LUA = """
for i = 1, #KEYS do redis.call('SET', KEYS[i], ARGV[i], 'EX', SCORED_TTL) end
return 1
"""

#: KEYS: the terminal's fraud hash and its terminal. ARGV: txn id, packed entry.
#: HSETNX: the first arrival counts, a repeated label changes nothing. The
#: terminal is flagged so that apply reads its fraud entries.
FRAUD_LUA = (
    EMPTY_TERMINAL_LUA
    + """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('EXPIRE', KEYS[1], FRAUD_TTL)
  if redis.call('EXISTS', KEYS[2]) == 0 then redis.call('SET', KEYS[2], empty_terminal()) end
  redis.call('SETRANGE', KEYS[2], 0, string.char(1))
  redis.call('EXPIRE', KEYS[2], TERM_TTL)
end
return 1
"""
)


#: A cluster: the transaction id claimed for its card. KEYS: its claim key. ARGV: the
#: card, the TTL. Returns the card it belonged to before (nil: claimed now). A script, not
#: a bare ``SET NX GET``: its reply is the same through every client path.
CLAIM_LUA = """
return redis.call('SET', KEYS[1], ARGV[1], 'NX', 'GET', 'EX', ARGV[2])
"""

#: A cluster: a claim given back (the transaction was too late: it changed nothing).
#: KEYS: its claim key. ARGV: the card. Deleted only if still that card's.
RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
