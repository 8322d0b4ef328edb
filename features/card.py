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
    :data:`HORIZON_SECONDS` of the newest; ``dropped`` is the newest event
    time that left ``recent`` (so an old card is never taken for a new one).
    """

    recent: tuple[tuple[float, float], ...] = ()
    dropped: float | None = None


def step(state: CardState, txn: Transaction) -> CardState:
    """Fold ``txn`` into ``state`` and drop what can no longer matter.

    Examples
    --------
    >>> s = step(CardState(), Transaction("a", "c", "p", 5.0, 0.0))
    >>> s = step(s, Transaction("b", "c", "p", 7.0, 90000.0))
    >>> s.recent  # the first event left the 1-day horizon
    ((90000.0, 7.0),)
    >>> s.dropped
    0.0
    """
    recent = list(state.recent)
    insort(recent, (txn.event_time, txn.amount))
    keep_from = bisect_left(recent, (recent[-1][0] - HORIZON_SECONDS, -math.inf))
    dropped = state.dropped
    if keep_from:
        newest_dropped = recent[keep_from - 1][0]
        dropped = newest_dropped if dropped is None else max(dropped, newest_dropped)
    return CardState(recent=tuple(recent[keep_from:]), dropped=dropped)


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
    previous = before[-1][0] if before else None
    if previous is None and state.dropped is not None and state.dropped < at:
        previous = state.dropped
    since = SINCE_PREV_CAP_SECONDS if previous is None else at - previous
    vector["card_seconds_since_prev"] = min(since, SINCE_PREV_CAP_SECONDS)
    vector["card_first_seen"] = 1.0 if previous is None else 0.0
    vector["txn_amount_log"] = math.log1p(max(txn.amount, 0.0))
    return vector


def encode_state(state: CardState) -> bytes:
    """Compact JSON bytes for a state.

    Examples
    --------
    >>> decode_state(encode_state(CardState(((1.0, 2.0),), dropped=0.5)))
    CardState(recent=((1.0, 2.0),), dropped=0.5)
    >>> decode_state(None)
    CardState(recent=(), dropped=None)
    """
    payload = {"r": state.recent, "d": state.dropped}
    return json.dumps(payload, separators=(",", ":")).encode()


def decode_state(raw: bytes | str | None) -> CardState:
    """The state stored as ``raw``; an empty state for ``None``."""
    if raw is None:
        return CardState()
    payload = json.loads(raw)
    recent = tuple((float(t), float(a)) for t, a in payload["r"])
    return CardState(recent=recent, dropped=payload["d"])
