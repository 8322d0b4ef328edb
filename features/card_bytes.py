"""A card's history as the stores keep it: bytes, a header and fixed-size records.

A card is stored as bytes: a 24-byte :data:`HEADER` holding the card's
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
>>> from features.card import CardHistory, step
>>> from features.events import Transaction
>>> t1 = Transaction("t1", "c1", "p1", 10.0, event_time=1000.0)
>>> h = step(CardHistory(), t1)
>>> decode(encode(h)) == h
True
>>> decode(append(encode(h), t1, 3600.0)).times
(1000.0, 1000.0)
"""

from __future__ import annotations

import struct
from functools import lru_cache
from typing import TypeVar

from features.card import HORIZON_SECONDS, CardHistory, record
from features.events import Transaction

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
T = TypeVar("T")


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
