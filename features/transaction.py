"""Features of the transaction itself: amount and calendar, in UTC.

Hour of day and day of week are cyclic (sine and cosine), so 23:59 is next
to 00:00 and Sunday next to Monday. Events carry no time zone, so night
(00:00 to 05:59) and weekend (Saturday, Sunday) are in UTC.

Examples
--------
>>> from features.events import Transaction
>>> v = view(Transaction("t", "c", "p", 99.0, event_time=1767225600.0))  # Thu 2026-01-01 00:00
>>> v["txn_is_night"], v["txn_is_weekend"], v["txn_hour_cos"]
(1.0, 0.0, 1.0)
"""

from __future__ import annotations

import math

from features.events import Transaction

FEATURES: dict[str, str] = {
    "txn_amount_log": "log(1 + amount)",
    "txn_hour_sin": "sine of the hour of day (UTC, fractional) over 24 h",
    "txn_hour_cos": "cosine of the hour of day (UTC, fractional) over 24 h",
    "txn_dow_sin": "sine of the day of week (UTC, Monday = 0, fractional) over 7 days",
    "txn_dow_cos": "cosine of the day of week (UTC, Monday = 0, fractional) over 7 days",
    "txn_is_night": "1 if between 00:00 and 05:59 UTC",
    "txn_is_weekend": "1 on Saturday or Sunday (UTC)",
    "txn_has_location": "1 if the event carries the terminal's location",
}
FEATURE_NAMES: tuple[str, ...] = tuple(FEATURES)
#: The calendar features: they cycle by design (hour of day, day of week).
CALENDAR: tuple[str, ...] = (
    "txn_hour_sin",
    "txn_hour_cos",
    "txn_dow_sin",
    "txn_dow_cos",
    "txn_is_night",
    "txn_is_weekend",
)

_DAY = 86400.0
#: 1970-01-01 was a Thursday: day 3 counting from Monday = 0.
_EPOCH_WEEKDAY = 3
#: ``2 * math.pi``, computed once (the same float).
_TAU = 2 * math.pi


def view(txn: Transaction) -> dict[str, float]:
    """The transaction's own features."""
    return dict(zip(FEATURE_NAMES, values(txn), strict=True))


def values(txn: Transaction) -> tuple[float, ...]:
    """:func:`view`'s values, in :data:`FEATURE_NAMES` order (no names attached)."""
    at = txn.event_time
    hours = (at % _DAY) / 3600.0
    hour_angle, day_angle = _TAU * hours / 24.0, _TAU * ((at / _DAY + _EPOCH_WEEKDAY) % 7.0) / 7.0
    return (
        math.log1p(max(txn.amount, 0.0)),
        math.sin(hour_angle),
        math.cos(hour_angle),
        math.sin(day_angle),
        math.cos(day_angle),
        1.0 if math.floor(hours) < 6 else 0.0,
        1.0 if (math.floor(at / _DAY) + _EPOCH_WEEKDAY) % 7 >= 5 else 0.0,
        1.0 if txn.has_location else 0.0,
    )
