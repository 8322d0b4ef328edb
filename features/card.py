"""Per-card features: fold a transaction into a card's state, read a vector.

Pure functions, no I/O, no clock: the stream agent, the API and the offline
replay all call :func:`step` and :func:`view`; only where the state is kept
differs.

The vector a transaction is scored with describes the card's history
*strictly before* that transaction (windows are half-open, ``[t - w, t)``),
plus the transaction's own amount. Windows are exact: the state keeps every
(time, amount) pair inside the longest window.

Examples
--------
>>> from features.events import Transaction
>>> s = CardState()
>>> t1 = Transaction("t1", "c1", "p1", 10.0, event_time=1000.0)
>>> view(s, t1)["card_first_seen"]
1.0
>>> s = step(s, t1)
>>> t2 = Transaction("t2", "c1", "p1", 30.0, event_time=1600.0)
>>> v = view(s, t2)
>>> v["card_txn_count_1h"], v["card_amount_sum_1h"], v["card_seconds_since_prev"]
(1.0, 10.0, 600.0)
"""

from __future__ import annotations

import json
import math
from bisect import bisect_left, insort
from dataclasses import dataclass

from features.events import Transaction

#: Part of every stored key: a new feature set never reads old state.
FEATURE_SET_VERSION = 1

#: Window name -> length in seconds.
WINDOWS: dict[str, float] = {"1h": 3600.0, "1d": 86400.0}

#: State older than this (before the card's newest event) can no longer matter.
HORIZON_SECONDS = max(WINDOWS.values())

#: ``card_seconds_since_prev`` for a card with no earlier transaction, and its cap.
SINCE_PREV_CAP_SECONDS = 30 * 86400.0

FEATURE_NAMES: tuple[str, ...] = (
    *(f"card_{kind}_{w}" for w in WINDOWS for kind in ("txn_count", "amount_sum")),
    "card_seconds_since_prev",
    "card_first_seen",
    "txn_amount_log",
)


@dataclass(frozen=True, slots=True)
class CardState:
    """What a card's features need to remember.

    ``recent`` holds ``(event_time, amount)`` pairs sorted by time, within
    :data:`HORIZON_SECONDS` of ``last_time``; ``first_time`` and
    ``last_time`` are the oldest and newest event times ever folded in.
    """

    recent: tuple[tuple[float, float], ...] = ()
    first_time: float | None = None
    last_time: float | None = None


def step(state: CardState, txn: Transaction) -> CardState:
    """Fold ``txn`` into ``state`` and drop what can no longer matter.

    Examples
    --------
    >>> s = step(CardState(), Transaction("a", "c", "p", 5.0, 0.0))
    >>> s = step(s, Transaction("b", "c", "p", 7.0, 90000.0))
    >>> s.recent  # the first event left the 1-day horizon
    ((90000.0, 7.0),)
    >>> s.first_time, s.last_time
    (0.0, 90000.0)
    """
    recent = list(state.recent)
    insort(recent, (txn.event_time, txn.amount))
    last = txn.event_time if state.last_time is None else max(state.last_time, txn.event_time)
    first = txn.event_time if state.first_time is None else min(state.first_time, txn.event_time)
    keep_from = bisect_left(recent, (last - HORIZON_SECONDS, -math.inf))
    return CardState(recent=tuple(recent[keep_from:]), first_time=first, last_time=last)


def view(state: CardState, txn: Transaction) -> dict[str, float]:
    """The feature vector for scoring ``txn`` given the card's ``state``.

    Only events strictly before ``txn.event_time`` count.
    """
    at = txn.event_time
    before = state.recent[: bisect_left(state.recent, (at, -math.inf))]
    vector: dict[str, float] = {}
    for name, length in WINDOWS.items():
        inside = before[bisect_left(before, (at - length, -math.inf)) :]
        vector[f"card_txn_count_{name}"] = float(len(inside))
        vector[f"card_amount_sum_{name}"] = float(sum(amount for _, amount in inside))
    previous = _previous_time(state, before, at)
    since = SINCE_PREV_CAP_SECONDS if previous is None else at - previous
    vector["card_seconds_since_prev"] = min(since, SINCE_PREV_CAP_SECONDS)
    vector["card_first_seen"] = 1.0 if previous is None else 0.0
    vector["txn_amount_log"] = math.log1p(max(txn.amount, 0.0))
    return vector


def _previous_time(
    state: CardState, before: tuple[tuple[float, float], ...], at: float
) -> float | None:
    if before:
        return before[-1][0]
    if state.last_time is not None and state.last_time < at:
        return state.last_time
    return None


def encode_state(state: CardState) -> bytes:
    """Compact JSON bytes for a state.

    Examples
    --------
    >>> decode_state(encode_state(CardState(((1.0, 2.0),), 1.0, 1.0)))
    CardState(recent=((1.0, 2.0),), first_time=1.0, last_time=1.0)
    >>> decode_state(None)
    CardState(recent=(), first_time=None, last_time=None)
    """
    payload = {"r": state.recent, "f": state.first_time, "l": state.last_time}
    return json.dumps(payload, separators=(",", ":")).encode()


def decode_state(raw: bytes | str | None) -> CardState:
    """The state stored as ``raw``; an empty state for ``None``."""
    if raw is None:
        return CardState()
    payload = json.loads(raw)
    recent = tuple((float(t), float(a)) for t, a in payload["r"])
    return CardState(recent=recent, first_time=payload["f"], last_time=payload["l"])
