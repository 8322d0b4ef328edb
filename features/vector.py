"""The feature set: every feature's name and meaning, and the one ``view``.

The stream agent, the API and the offline replay all turn a transaction and
the state before it into a vector by calling :func:`view`; only where the
state comes from differs. :data:`FEATURES` maps each name (derived from its
definition: entity, aggregate, window) to what it means; the docs table is
generated from it.

:data:`FEATURE_SET_VERSION` is part of every stored key: a changed feature
set starts from fresh state instead of misreading old state.

Examples
--------
>>> from features.events import Transaction
>>> v = view(EntityState(), Transaction("t", "c", "p", 20.0, event_time=0.0))
>>> tuple(v) == FEATURE_NAMES
True
>>> len(FEATURE_NAMES)
49
>>> unpack_vector(pack_vector(v)) == v
True
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from operator import itemgetter

from features import card, terminal, transaction
from features.card import CardHistory
from features.events import Transaction
from features.terminal import TerminalState

FEATURE_SET_VERSION = 4

FEATURES: dict[str, str] = {**card.FEATURES, **terminal.FEATURES, **transaction.FEATURES}
FEATURE_NAMES: tuple[str, ...] = tuple(FEATURES)

#: Features by tag, for whatever chooses among them (the drift detectors' defaults):
#:
#: - ``cyclic``: calendar features, which cycle by design (watching them only reports the
#:   time of day);
#: - ``slow``: 7- and 30-day windows, which keep growing for a week or a month after a start
#:   from empty state;
#: - ``volume``: counts, sums, maxima, gaps, distinct terminals and the speed between two
#:   payments, which rise and fall with how often cards pay (the weekly cycle: a day
#:   compared with the week before reports the weekday);
#: - ``sparse``: 0 or constant for almost every transaction by design: the 10-minute and
#:   1-hour windows (a card seldom pays twice within the hour), the frauds at a terminal
#:   (labels are rare and late) and the flags.
TAGS: dict[str, frozenset[str]] = {
    "cyclic": frozenset(transaction.CALENDAR),
    "slow": frozenset(f for f in FEATURE_NAMES if f.endswith(("_7d", "_30d"))),
    "volume": frozenset(
        f
        for f in FEATURE_NAMES
        if any(
            part in f
            for part in ("_count_", "_sum_", "_max_", "_seconds_", "_distinct_", "_speed_")
        )
    ),
    "sparse": frozenset(
        f
        for f in FEATURE_NAMES
        if f.endswith(("_10m", "_1h"))
        or f.startswith(("terminal_fraud_", "terminal_risk_"))
        or f in ("card_first_seen", "txn_has_location")
    ),
}


def untagged(*tags: str) -> tuple[str, ...]:
    """The features that carry none of ``tags``, in vector order.

    Parameters
    ----------
    tags
        Names of :data:`TAGS`.

    Examples
    --------
    >>> untagged("cyclic", "slow", "volume", "sparse")
    ('card_amount_mean_1d', 'card_distance_from_usual_km', 'txn_amount_log')
    >>> untagged("nonsense")
    Traceback (most recent call last):
    ...
    KeyError: "unknown tag(s) ['nonsense']; tags: ['cyclic', 'slow', 'volume', 'sparse']"
    """
    unknown = [t for t in tags if t not in TAGS]
    if unknown:
        raise KeyError(f"unknown tag(s) {unknown}; tags: {list(TAGS)}")
    excluded = frozenset().union(*(TAGS[t] for t in tags))
    return tuple(f for f in FEATURE_NAMES if f not in excluded)


_VECTOR = struct.Struct(f"<{len(FEATURE_NAMES)}d")
_IN_ORDER = itemgetter(*FEATURE_NAMES)
_ZEROS = dict.fromkeys(FEATURE_NAMES, 0.0)
#: Bytes of a packed vector.
VECTOR_SIZE = _VECTOR.size


@dataclass(frozen=True, slots=True)
class EntityState:
    """The state a transaction is scored from: its card's and its terminal's."""

    card: CardHistory = field(default_factory=CardHistory)
    terminal: TerminalState = field(default_factory=TerminalState)


def view(state: EntityState, txn: Transaction) -> dict[str, float]:
    """The full feature vector for ``txn`` given the state before it.

    Parameters
    ----------
    state
        The card's and the terminal's state before ``txn`` (a store's ``apply`` or
        ``peek``).
    txn
        The transaction to score.
    """
    values = card.values(state.card, txn)
    values += terminal.values(state.terminal, txn)
    values += transaction.values(txn)
    vector = _ZEROS.copy()  # the keys in place already: no resizing while filling in
    vector.update(zip(FEATURE_NAMES, values, strict=True))
    return vector


def pack_vector(vector: dict[str, float]) -> bytes:
    """The vector as float64s in :data:`FEATURE_NAMES` order (exact, compact)."""
    return _VECTOR.pack(*_IN_ORDER(vector))


def unpack_vector(raw: bytes) -> dict[str, float]:
    """The vector packed by :func:`pack_vector`."""
    return dict(zip(FEATURE_NAMES, _VECTOR.unpack(raw), strict=True))


def describe() -> str:
    """A Markdown table of every feature and its meaning (for the docs)."""
    rows = [f"| `{name}` | {meaning} |" for name, meaning in FEATURES.items()]
    return "\n".join(["| feature | meaning |", "|---|---|", *rows])
