"""Per-card features: the card's history as compact records, and its vector.

Pure functions, no I/O, no clock. A card's state is its own transactions of
the last 30 days (plus the allowed lateness), one 24-byte record each, so
every card window is **exact**: half-open ``[t - w, t)``, the transaction
itself and anything at or after its time excluded.

The state is stored as bytes: a 24-byte :data:`HEADER` holding the card's
newest event time, how many records were ever dropped from the front, how
many it holds now and the newest time among the dropped ones, then the
records one after the other in the order they were applied, then room for
:data:`SLACK` more. Folding a transaction in (:func:`append`) writes its
packed :func:`record` into the room and rewrites the header; when there is
no room left, the card is rewritten whole, without the records at the front
that no allowed transaction can see any more, and with room again. So only
one transaction in ``SLACK + 1`` rewrites the card (in memory and in the
Redis append-only file); the others change a few bytes. The room is kept
small because it is memory too. Both stores keep exactly these bytes (a
Redis Lua script does the same without understanding them; its pending
markers find a transaction's records by the dropped count, and
:func:`lost_since` tells whether one it could see is gone). :func:`decode`
unpacks each column of the records in one call and sorts by time if a late
record came in.

Examples
--------
>>> from features.events import Transaction
>>> h = CardHistory()
>>> t1 = Transaction("t1", "c1", "p1", 10.0, event_time=1000.0)
>>> view(h, t1)["card_first_seen"]
1.0
>>> h = step(h, t1)
>>> v = view(h, Transaction("t2", "c1", "p1", 30.0, event_time=1600.0))
>>> v["card_txn_count_1h"], v["card_amount_sum_1h"], v["card_seconds_since_prev"]
(1.0, 10.0, 600.0)
>>> decode(encode(h)) == h
True
>>> decode(append(encode(h), t1, 3600.0)).times == (1000.0, 1000.0)
True
"""

from __future__ import annotations

import math
import struct
import zlib
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from functools import lru_cache
from operator import mul
from typing import TypeVar

from features.events import Transaction
from features.geo import NO_LOCATION, location_values

#: Window name -> length in seconds, for the card's count/sum/mean/max.
WINDOWS: dict[str, float] = {
    "10m": 600.0,
    "1h": 3600.0,
    "1d": 86400.0,
    "7d": 7 * 86400.0,
    "30d": 30 * 86400.0,
}
#: Windows for the distinct-terminal counts.
TERMINAL_WINDOWS: dict[str, float] = {"1d": 86400.0, "7d": 7 * 86400.0}
#: Nothing older than this before a transaction changes its vector.
HORIZON_SECONDS = 30 * 86400.0
#: ``card_seconds_since_prev`` when the card had no transaction within the horizon.
SINCE_PREV_CAP_SECONDS = HORIZON_SECONDS

#: One transaction: time, amount in cents, terminal hash, lat/lon in 1e-5 degrees.
RECORD = struct.Struct("<dIIii")
#: The header: the newest event time folded in, how many records were ever
#: dropped from the front, how many records follow, and the newest time
#: among the dropped records (0 before any; :func:`append`).
HEADER = struct.Struct("<dIId")
_TIME = struct.Struct("<d")
#: Records a card has room for after it is rewritten (written in place).
SLACK = 1
_ROOM = bytes(SLACK * RECORD.size)

Record = tuple[float, int, int, int, int]
T = TypeVar("T")

_DESCRIBE_WINDOW = {
    "txn_count": "number of the card's transactions in the {w} before this one",
    "amount_sum": "total amount of the card's transactions in the {w} before",
    "amount_mean": "mean amount of the card's transactions in the {w} before (0 if none)",
    "amount_max": "largest amount of the card's transactions in the {w} before (0 if none)",
}

FEATURES: dict[str, str] = {
    **{
        f"card_{kind}_{w}": text.format(w=w)
        for w in WINDOWS
        for kind, text in _DESCRIBE_WINDOW.items()
    },
    "card_seconds_since_prev": "seconds since the card's previous transaction (30 days if none)",
    "card_first_seen": "1 if the card had no transaction in the 30 days before, else 0",
    "card_amount_zscore_30d": "(amount - 30d mean) / 30d std. dev. of the card (0 if < 2 or flat)",
    "card_amount_ratio_mean_30d": "(amount + 1) / (30d mean amount + 1); 1 with no history",
    **{
        f"card_distinct_terminals_{w}": f"distinct terminals the card used in the {w} before"
        for w in TERMINAL_WINDOWS
    },
    "card_terminal_new_30d": "1 if the card did not use this terminal in the 30 days before",
    "card_distance_from_usual_km": (
        "km from the mean location of the card's located 30d transactions (0 without locations)"
    ),
    "card_speed_since_prev_kmh": (
        "km/h implied by the previous transaction's location and time "
        "(0 without locations; capped at 100,000)"
    ),
}
FEATURE_NAMES: tuple[str, ...] = tuple(FEATURES)


@dataclass(frozen=True, slots=True)
class CardHistory:
    """A card's transactions as columns sorted by time (ties in the order applied).

    ``times`` in seconds, ``cents``, ``terminals`` (hashes), ``lats``/``lons``
    (1e-5 degrees, :data:`features.geo.NO_LOCATION` when unknown), and the newest time
    ever folded in.
    """

    times: tuple[float, ...] = ()
    cents: tuple[int, ...] = ()
    terminals: tuple[int, ...] = ()
    lats: tuple[int, ...] = ()
    lons: tuple[int, ...] = ()
    newest: float | None = None

    @property
    def records(self) -> tuple[Record, ...]:
        """The same history as one (time, cents, terminal, lat, lon) tuple per transaction."""
        return tuple(zip(self.times, self.cents, self.terminals, self.lats, self.lons, strict=True))


def terminal_hash(terminal_id: str) -> int:
    """A 32-bit hash of a terminal id (CRC-32): what card records keep of it.

    >>> terminal_hash("p1") == terminal_hash("p1") != terminal_hash("p2")
    True
    """
    return zlib.crc32(terminal_id.encode())


def record(txn: Transaction) -> Record:
    """The record ``txn`` adds to its card's history.

    Without a location both ``lat`` and ``lon`` are :data:`features.geo.NO_LOCATION`;
    with one, neither is (coordinates are validated to within 180 degrees).
    """
    if txn.lat is None or txn.lon is None:
        lat = lon = NO_LOCATION
    else:
        lat, lon = round(txn.lat * 1e5), round(txn.lon * 1e5)
    return (txn.event_time, round(txn.amount * 100), terminal_hash(txn.terminal_id), lat, lon)


def packed_record(txn: Transaction) -> bytes:
    """:func:`record` packed: the 8+4+4+4+4 bytes :func:`append` adds."""
    return RECORD.pack(*record(txn))


def append(raw: bytes, txn: Transaction, allowed_lateness: float) -> bytes:
    """The stored bytes after ``txn``: its record written, stale records dropped.

    The record goes into the card's room if it has some (only the header and
    the record change). Otherwise the card is rewritten: without the records
    at its front (in the order they were applied) that are older than any
    transaction still allowed (the newest time minus the allowed lateness and
    the horizon), then the record, then room for :data:`SLACK` more. Nothing
    else is reordered, so a record's position minus the header's dropped
    count never changes (the Redis store's pending markers rely on it). The
    Lua script does the same.

    Parameters
    ----------
    raw
        The card's stored bytes (empty for a card with no state yet).
    txn
        The transaction to fold in.
    allowed_lateness
        Seconds a transaction may be behind the card's newest event time; with
        :data:`HORIZON_SECONDS` it sets which front records are stale.

    Examples
    --------
    >>> day = 86400.0
    >>> raw = b""
    >>> for i in range(40):
    ...     raw = append(raw, Transaction(f"t{i}", "c", "p", 1.0, i * day), 3600.0)
    >>> HEADER.unpack_from(raw)[1:3], decode(raw).times[0] / day, HEADER.unpack_from(raw)[3] / day
    ((8, 32), 8.0, 7.0)
    """
    rec = packed_record(txn)
    if not raw:
        return HEADER.pack(txn.event_time, 0, 1, 0.0) + rec + _ROOM
    newest, dropped, n, lost = HEADER.unpack_from(raw)
    newest = max(newest, txn.event_time)
    at = HEADER.size + n * RECORD.size
    if at < len(raw):
        return (
            HEADER.pack(newest, dropped, n + 1, lost)
            + raw[HEADER.size : at]
            + rec
            + raw[at + RECORD.size :]
        )
    cutoff = newest - allowed_lateness - HORIZON_SECONDS
    stale = 0
    while stale < n:
        when = _TIME.unpack_from(raw, HEADER.size + stale * RECORD.size)[0]
        if when >= cutoff:
            break
        lost = max(lost, when)
        stale += 1
    return (
        HEADER.pack(newest, dropped + stale, n - stale + 1, lost)
        + raw[HEADER.size + stale * RECORD.size :]
        + rec
        + _ROOM
    )


def lost_since(raw: bytes, dropped: int, txn: Transaction) -> bool:
    """Whether a record ``txn`` could see was dropped from the card since it was applied.

    Records dropped before ``txn`` was applied were older than anything it can see
    (it was allowed), so the newest dropped time alone tells.

    Parameters
    ----------
    raw
        The card's stored bytes now (:func:`append`'s; not empty).
    dropped
        The card's dropped count (its header's) when ``txn`` was applied.
    txn
        The transaction applied then.

    Examples
    --------
    >>> t = Transaction("t", "c", "p", 1.0, HORIZON_SECONDS + 10.0)
    >>> raw = HEADER.pack(t.event_time, 3, 1, 20.0) + packed_record(t)
    >>> lost_since(raw, 3, t), lost_since(raw, 0, t)
    (False, True)
    """
    _, now, _, lost = HEADER.unpack_from(raw)
    return bool(now > dropped and lost >= txn.event_time - HORIZON_SECONDS)


def step(history: CardHistory, txn: Transaction) -> CardHistory:
    """``history`` with ``txn`` folded in (kept sorted; ties stay in applied order).

    Parameters
    ----------
    history
        The card's history before ``txn``.
    txn
        The transaction to fold in (no lateness check: see :func:`is_too_late`).
    """
    time, cents, terminal, lat, lon = record(txn)
    at = bisect_right(history.times, time)

    def put(column: tuple[T, ...], value: T) -> tuple[T, ...]:
        return (*column[:at], value, *column[at:])

    newest = time if history.newest is None else max(history.newest, time)
    return CardHistory(
        put(history.times, time),
        put(history.cents, cents),
        put(history.terminals, terminal),
        put(history.lats, lat),
        put(history.lons, lon),
        newest,
    )


def is_too_late(history: CardHistory, txn: Transaction, allowed_lateness: float) -> bool:
    """Whether ``txn`` is older than the card's newest event by more than allowed.

    Parameters
    ----------
    history
        The card's history (never late for a card without one).
    txn
        The transaction to check.
    allowed_lateness
        Seconds ``txn`` may be behind the card's newest event time.
    """
    return history.newest is not None and txn.event_time < history.newest - allowed_lateness


def encode(history: CardHistory) -> bytes:
    """The bytes of ``history``: the header (nothing dropped), the records, no room."""
    if history.newest is None:
        return b""
    return HEADER.pack(history.newest, 0, len(history.times), 0.0) + b"".join(
        RECORD.pack(*rec) for rec in history.records
    )


def decode(raw: bytes | memoryview | None) -> CardHistory:
    """The history stored as ``raw``, sorted by time (ties in stored order).

    Each column is unpacked straight from the records (one struct per column,
    skipping the other fields), so no intermediate per-record values are built.
    """
    if not raw:
        return CardHistory()
    newest, _, n, _ = HEADER.unpack_from(raw)
    at = HEADER.size
    c_times, c_cents, c_terminals, c_lats, c_lons = _columns(n)
    times = c_times.unpack_from(raw, at)
    cents, terminals = c_cents.unpack_from(raw, at), c_terminals.unpack_from(raw, at)
    lats, lons = c_lats.unpack_from(raw, at), c_lons.unpack_from(raw, at)
    if list(times) == sorted(times):
        return CardHistory(times, cents, terminals, lats, lons, newest)
    order = sorted(range(n), key=times.__getitem__)  # stable: ties keep their stored order

    def column(values: tuple[T, ...]) -> tuple[T, ...]:
        return tuple(map(values.__getitem__, order))

    return CardHistory(
        column(times), column(cents), column(terminals), column(lats), column(lons), newest
    )


@lru_cache(maxsize=512)
def _columns(n: int) -> tuple[struct.Struct, ...]:
    """Per field of :data:`RECORD`, a struct unpacking that field of ``n`` records."""
    fields = RECORD.format.lstrip("<")
    sizes = [struct.calcsize("<" + code) for code in fields]

    def skip(size: int) -> str:
        return f"{size}x" if size else ""

    return tuple(
        struct.Struct("<" + (skip(sum(sizes[:k])) + code + skip(sum(sizes[k + 1 :]))) * n)
        for k, code in enumerate(fields)
    )


def view(history: CardHistory, txn: Transaction) -> dict[str, float]:
    """The card features for scoring ``txn``: only records strictly before it count.

    Parameters
    ----------
    history
        The card's history (records at or after ``txn``'s time are ignored).
    txn
        The transaction to score.
    """
    return dict(zip(FEATURE_NAMES, values(history, txn), strict=True))


def values(history: CardHistory, txn: Transaction) -> list[float]:
    """:func:`view`'s values, in :data:`FEATURE_NAMES` order (no names attached).

    The windows are nested suffixes of the records before ``txn``, so each is
    found by one bisection over the whole history and summed from there;
    integer cents make every sum exact, whatever its order.

    Parameters
    ----------
    history, txn
        As for :func:`view`.
    """
    at = txn.event_time
    times = history.times
    end = bisect_left(times, at)
    start = bisect_left(times, at - HORIZON_SECONDS, 0, end)
    if start == end:
        return list(_FIRST_SEEN)
    cents = history.cents
    out: list[float] = []
    firsts: list[int] = []  # per window, its first record
    done = end  # the records counted so far: [done, end), their sum and largest amount
    total = top = 0
    for length in _WINDOW_LENGTHS:  # shortest first: each window extends the one before
        first = bisect_left(times, at - length, start, done)
        firsts.append(first)
        if first == end:
            out += _NO_RECORDS
            continue
        if first < done:
            more = cents[first:done]
            total += sum(more)
            top = max(more) if done == end else max(top, max(more))
            done = first
        count = end - first
        out += (float(count), total / 100, total / count / 100, top / 100)
    inside = cents[start:end]
    if done != start:  # the horizon, should the longest window ever be shorter
        total = sum(inside)
    previous = times[end - 1]
    out += (at - previous, 0.0, *_amount_vs_history(inside, total, round(txn.amount * 100)))
    terminals = history.terminals
    for window in _TERMINAL_AT:
        out.append(float(len(set(terminals[firsts[window] : end]))))
    out.append(0.0 if terminal_hash(txn.terminal_id) in terminals[start:end] else 1.0)
    out += location_values(previous, history.lats[start:end], history.lons[start:end], txn)
    return out


#: One card window's count, sum, mean and max without any record in it.
_NO_RECORDS = (0.0, 0.0, 0.0, 0.0)
_WINDOW_LENGTHS = tuple(WINDOWS.values())
if list(_WINDOW_LENGTHS) != sorted(_WINDOW_LENGTHS):
    raise ImportError("card.values expects WINDOWS from the shortest to the longest")
if not set(TERMINAL_WINDOWS.values()) <= set(_WINDOW_LENGTHS):
    raise ImportError("card.values expects each of TERMINAL_WINDOWS to be one of WINDOWS")
#: Per distinct-terminal window, the index of the same window in :data:`WINDOWS`.
_TERMINAL_AT = tuple(_WINDOW_LENGTHS.index(length) for length in TERMINAL_WINDOWS.values())
#: The values of a card without any transaction in the horizon before.
_FIRST_SEEN = tuple(
    {
        **dict.fromkeys(FEATURE_NAMES, 0.0),
        "card_seconds_since_prev": SINCE_PREV_CAP_SECONDS,
        "card_first_seen": 1.0,
        "card_amount_ratio_mean_30d": 1.0,
        "card_terminal_new_30d": 1.0,
    }.values()
)


def _amount_vs_history(cents: tuple[int, ...], total: int, amount: int) -> tuple[float, float]:
    """The z-score and the ratio to the mean of ``amount`` against ``cents`` (summing ``total``)."""
    n = len(cents)
    zscore = 0.0
    if n >= 2:
        spread = n * sum(map(mul, cents, cents)) - total * total  # n^2 * variance, exact
        if spread > 0:
            zscore = (n * amount - total) / math.sqrt(spread)
    ratio = (amount / 100 + 1) / (total / n / 100 + 1)
    return zscore, ratio
