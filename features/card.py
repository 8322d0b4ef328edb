"""Per-card features: the card's history, and its vector.

Pure functions, no I/O, no clock. A card's state is its own transactions of
the last 30 days (plus the allowed lateness), one 24-byte record each, so
every card window is **exact**: half-open ``[t - w, t)``, the transaction
itself and anything at or after its time excluded. How the stores keep it, as
bytes, is :mod:`features.card_bytes`.

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
"""

from __future__ import annotations

import math
import zlib
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
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

    >>> terminal_hash("p1"), terminal_hash("p2")
    (1060662067, 2788244105)
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
