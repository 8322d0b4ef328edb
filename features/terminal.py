"""Per-terminal features: activity and fraud risk, never from a future label.

A terminal is written by every scoring worker (its cards hash to many
partitions) and by the learner, so its state is made only of updates that
commute: bucket counters that are incremented, and fraud entries set by
transaction id. Any order of writers gives the same state.

**Windows are bucketed.** A window of length ``w`` is the
:data:`BUCKETS` complete buckets of ``w / BUCKETS`` seconds before the
bucket holding the transaction (buckets aligned to the Unix epoch, UTC). So
``terminal_txn_count_1d`` counts the 24 whole hours before the current hour.
Against the exact sliding window ``[t - w, t)`` the count misses the
transactions of the current partial bucket and adds those of one partial
bucket at the far end: the error is at most the busiest bucket, ``w / 24``
of the window (measured in ``fraudstream bench features``). Leaving the
current bucket out also means concurrent writers never race on a bucket a
transaction reads.

Fraud counts use the same windows, counting fraud labels whose transaction
falls in the window **and whose label had arrived before the transaction's
time** (:data:`FraudEntry` keeps both times); the rate divides by the
transaction count of the same window.

Examples
--------
>>> from features.events import Transaction
>>> t = Transaction("t1", "c1", "p1", 5.0, event_time=86400.0 * 3 + 60)
>>> current_buckets(t.event_time)
(72, 10, 2)
>>> state = TerminalState(counts=(4, 10, 10), frauds=((86400.0 * 3 - 100, 86400.0 * 3),))
>>> v = view(state, t)
>>> v["terminal_fraud_count_1d"], v["terminal_fraud_rate_1d"]
(1.0, 0.25)
"""

from __future__ import annotations

import math
import struct
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat

from features.events import Transaction

#: Window name -> length in seconds.
WINDOWS: dict[str, float] = {"1d": 86400.0, "7d": 7 * 86400.0, "30d": 30 * 86400.0}
#: Complete buckets per window.
BUCKETS = 24
#: Bucket length per window, in window order.
BUCKET_SECONDS: tuple[float, ...] = tuple(w / BUCKETS for w in WINDOWS.values())
#: Buckets older than this many before the current one are deleted (so a
#: transaction up to one full window behind the terminal's newest still
#: reads exact buckets).
KEEP_BUCKETS = 2 * BUCKETS
#: A fraud entry: (transaction time, label arrival time).
FRAUD = struct.Struct("<dd")
FraudEntry = tuple[float, float]

#: The delayed windows of terminal risk: (series, offset, length) in buckets of window
#: series ``series`` (0: 1 h buckets, 1: 7 h, 2: 30 h). Each ends ``offset`` buckets
#: (7 days, or 7.5 for 30 h buckets) before the transaction's bucket and holds ``length``
#: buckets: "1d" 21 h, "7d" 7 days, "30d" 30 days. By then the chargebacks of the window's
#: frauds have mostly come, where a window ending now holds frauds whose labels cannot have
#: (a fraud of the last day is almost never labelled within the day).
DELAYED: dict[str, tuple[int, int, int]] = {"1d": (1, 24, 3), "7d": (1, 24, 24), "30d": (2, 6, 24)}

FEATURES: dict[str, str] = {}
for _w in WINDOWS:
    FEATURES[f"terminal_txn_count_{_w}"] = (
        f"transactions at the terminal in the {_w} window (whole buckets before the current one)"
    )
    FEATURES[f"terminal_fraud_count_{_w}"] = (
        f"frauds at the terminal in the {_w} window whose label had arrived before this transaction"
    )
    FEATURES[f"terminal_fraud_rate_{_w}"] = (
        f"terminal_fraud_count_{_w} / terminal_txn_count_{_w} (0 if no transactions)"
    )
for _w, (_series, _offset, _length) in DELAYED.items():
    _hours = BUCKET_SECONDS[_series] / 3600
    FEATURES[f"terminal_risk_{_w}"] = (
        f"frauds / transactions at the terminal in the {_length * _hours:g} h ending "
        f"{_offset * _hours / 24:g} days before the transaction's {_hours:g} h bucket (frauds "
        "whose label had arrived before the transaction)"
    )
FEATURE_NAMES: tuple[str, ...] = tuple(FEATURES)


@dataclass(frozen=True, slots=True)
class TerminalState:
    """What a terminal's features need: the window counts (the :data:`WINDOWS`, then
    the :data:`DELAYED` ones) and the known frauds."""

    counts: tuple[int, ...] = (0,) * (len(WINDOWS) + len(DELAYED))
    frauds: tuple[FraudEntry, ...] = ()


def current_buckets(event_time: float) -> tuple[int, ...]:
    """The index of the bucket holding ``event_time``, per window."""
    return tuple([math.floor(event_time / size) for size in BUCKET_SECONDS])


def field(window: int, bucket: int) -> int:
    """The stored counter id of ``bucket`` of window number ``window`` (0-based).

    Parameters
    ----------
    window
        Index of the window in :data:`WINDOWS` (0-based).
    bucket
        Index of the bucket in that window's series (:func:`current_buckets`).

    Examples
    --------
    >>> field(0, 72), field(2, 2)
    (289, 11)
    """
    return bucket * 4 + window + 1


def window_counts(
    buckets: Mapping[int, int], newest: Sequence[int | None], event_time: float
) -> tuple[int, ...]:
    """Sum each window's complete buckets before ``event_time``, then each
    :data:`DELAYED` window's.

    ``newest`` is the newest bucket counted so far per window: buckets more
    than :data:`KEEP_BUCKETS` behind it may already be deleted, so they are
    never read, whichever store (and clean-up schedule) holds them. The Redis
    store does the same sum in Lua; the contract tests prove they agree.

    Parameters
    ----------
    buckets
        The terminal's bucket counts by :func:`field` id.
    newest
        Per window, the newest bucket counted so far (None before any).
    event_time
        Time of the transaction to sum for, in epoch seconds.
    """
    sums = []
    currents = current_buckets(event_time)
    get = buckets.get
    for i, current in enumerate(currents):
        stored = newest[i]
        known = current if stored is None else max(stored, current)
        low = max(current - BUCKETS, known - KEEP_BUCKETS)
        sums.append(_summed(get, i, low, current))
    for i, offset, length in DELAYED.values():  # the same buckets, further back
        current, stored = currents[i], newest[i]
        known = current if stored is None else max(stored, current)
        low = max(current - offset - length, known - KEEP_BUCKETS)
        sums.append(_summed(get, i, low, current - offset))
    return tuple(sums)


def _summed(get: Callable[[int, int], int], window: int, low: int, high: int) -> int:
    """The counts of buckets ``low`` to ``high - 1`` of ``window``: their :func:`field` ids
    step by 4, summed in one loop in C (a :func:`field` call per bucket would cost 3 % of a
    scorecard run)."""
    if high <= low:
        return 0
    ids = range(field(window, low), field(window, high), 4)
    return sum(map(get, ids, repeat(0, len(ids))))


def step(
    buckets: Mapping[int, int], newest: Sequence[int | None], event_time: float
) -> tuple[dict[int, int], tuple[int, ...]]:
    """Count a transaction at ``event_time``; drop buckets no one may read again.

    Parameters
    ----------
    buckets
        The terminal's bucket counts by :func:`field` id (not changed: a copy is returned).
    newest
        Per window, the newest bucket counted so far (None before any).
    event_time
        Time of the transaction to count, in epoch seconds.
    """
    out = dict(buckets)
    known = step_in_place(out, newest, event_time)
    prune(out, known)  # always, even when no window moved on (a very late transaction)
    return out, known


def step_in_place(
    buckets: dict[int, int], newest: Sequence[int | None], event_time: float
) -> tuple[int, ...]:
    """:func:`step` on ``buckets`` itself: the same counts, and buckets no one may read
    again dropped only when a window's newest bucket moves on (:func:`window_counts`
    never reads them, so the sums are those of :func:`step`).

    Parameters
    ----------
    buckets
        The terminal's bucket counts by :func:`field` id, changed in place.
    newest, event_time
        As for :func:`step`.

    Examples
    --------
    >>> buckets: dict[int, int] = {}
    >>> newest = step_in_place(buckets, (None, None, None), 3600.0 * 5)
    >>> newest, window_counts(buckets, newest, 3600.0 * 6)
    ((5, 0, 0), (1, 0, 0, 0, 0, 0))
    """
    known = count_in_place(buckets, newest, event_time)
    if known != tuple(newest):
        prune(buckets, known)
    return known


def count_in_place(
    buckets: dict[int, int], newest: Sequence[int | None], event_time: float
) -> tuple[int, ...]:
    """Count a transaction at ``event_time`` in ``buckets`` itself, dropping nothing; the
    newest bucket per window. A store that holds many terminals may :func:`prune` only
    now and then: the buckets it keeps too long are never read.

    Parameters
    ----------
    buckets
        The terminal's bucket counts by :func:`field` id, changed in place.
    newest, event_time
        As for :func:`step`.
    """
    currents = current_buckets(event_time)
    for i, current in enumerate(currents):
        key = field(i, current)
        buckets[key] = buckets.get(key, 0) + 1
    return tuple(c if n is None else max(n, c) for n, c in zip(newest, currents, strict=True))


def prune(buckets: dict[int, int], known: Sequence[int]) -> None:
    """Drop the buckets more than :data:`KEEP_BUCKETS` behind each window's newest.

    Parameters
    ----------
    buckets
        The terminal's bucket counts by :func:`field` id, changed in place.
    known
        Per window, its newest bucket (as :func:`count_in_place` returns it).
    """
    floors = [k - KEEP_BUCKETS for k in known]  # (a key is field(window, bucket))
    for key in [k for k in buckets if (k - 1) // 4 < floors[(k - 1) % 4]]:
        del buckets[key]


def fraud_floor(newest: Sequence[int | None], event_time: float) -> float:
    """The oldest transaction time whose fraud entry a store must still return.

    Entries older than that may be pruned, so no store returns them.

    Parameters
    ----------
    newest
        Per window, the terminal's newest bucket counted so far (None before any).
    event_time
        Time of the transaction to be scored, in epoch seconds.
    """
    last = len(WINDOWS) - 1
    current = current_buckets(event_time)[last]
    stored = newest[last]
    known = current if stored is None else max(stored, current)
    return (known - KEEP_BUCKETS) * BUCKET_SECONDS[last]


def pack_fraud(txn_time: float, arrived: float) -> bytes:
    """A fraud entry as stored (:data:`FRAUD`).

    Parameters
    ----------
    txn_time
        Event time of the fraudulent transaction, in epoch seconds.
    arrived
        When its fraud label arrived, in epoch seconds.
    """
    return FRAUD.pack(txn_time, arrived)


def unpack_frauds(values: Iterable[bytes]) -> tuple[FraudEntry, ...]:
    """Fraud entries from their stored bytes, sorted."""
    return tuple(sorted(FRAUD.unpack(v) for v in values))


def view(state: TerminalState, txn: Transaction) -> dict[str, float]:
    """The terminal features for scoring ``txn``.

    Parameters
    ----------
    state
        The terminal's window counts and known frauds before ``txn``.
    txn
        The transaction to score.
    """
    return dict(zip(FEATURE_NAMES, values(state, txn), strict=True))


_NO_RISK = [0.0] * len(DELAYED)


def values(state: TerminalState, txn: Transaction) -> list[float]:
    """:func:`view`'s values, in :data:`FEATURE_NAMES` order (no names attached).

    Parameters
    ----------
    state, txn
        As for :func:`view`.
    """
    windows = state.counts[: len(WINDOWS)]
    if not state.frauds:  # the usual case: no fraud count, no rate, no risk
        return [value for count in windows for value in (float(count), 0.0, 0.0)] + _NO_RISK
    at = txn.event_time
    # the times of the frauds whose label came before ``at``, sorted: a window's count is
    # then two bisections (six passes over the entries cost 9 us with a single one)
    known = sorted([when for when, came in state.frauds if came < at])
    out: list[float] = []
    for count, size in zip(windows, BUCKET_SECONDS, strict=True):
        current = math.floor(at / size)
        frauds = _between(known, (current - BUCKETS) * size, current * size)
        out += (float(count), float(frauds), min(frauds / count, 1.0) if count else 0.0)
    delayed = state.counts[len(WINDOWS) :] or (0,) * len(DELAYED)
    for count, (i, offset, length) in zip(delayed, DELAYED.values(), strict=True):
        size = BUCKET_SECONDS[i]
        end = math.floor(at / size) - offset
        frauds = _between(known, (end - length) * size, end * size)
        out.append(min(frauds / count, 1.0) if count else 0.0)
    return out


def _between(times: list[float], start: float, end: float) -> int:
    """How many of the sorted ``times`` fall in ``[start, end)``."""
    return bisect_left(times, end) - bisect_left(times, start)
