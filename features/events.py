"""The events that flow through the system, as plain frozen values.

Wire formats (JSON on Kafka, HTTP bodies) are validated at the edges and
turned into these; everything inside works with them. Times are event times
in seconds since the Unix epoch (UTC); nothing here reads the clock.

A :class:`Transaction` is normalised when it is built, so every path (stream,
API, replay, tests) folds exactly the same numbers into feature state: event
time to the millisecond, amount to the cent, coordinates to 1e-5 degrees
(about a metre).

Examples
--------
>>> t = Transaction(txn_id="t1", card_id="c1", terminal_id="p9", amount=12.499, event_time=60.0)
>>> t.amount
12.5
>>> Transaction("t2", "c1", "p9", 1.0, 0.0, lat=48.8566141, lon=2.3522219).lat
48.85661
>>> Label(txn_id="t1", is_fraud=True, event_time=3600.0).is_fraud
True
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Transaction:
    """A card payment attempt, at the time it happened.

    ``lat``/``lon`` are the terminal's location when the producer knows it;
    both or neither are given.
    """

    txn_id: str
    card_id: str
    terminal_id: str
    amount: float
    event_time: float
    lat: float | None = None
    lon: float | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "amount", round(float(self.amount), 2))
        set_(self, "event_time", round(float(self.event_time), 3))
        if (self.lat is None) != (self.lon is None):
            raise ValueError("lat and lon must be given together")
        if self.lat is not None and self.lon is not None:
            set_(self, "lat", round(float(self.lat), 5))
            set_(self, "lon", round(float(self.lon), 5))

    @property
    def has_location(self) -> bool:
        return self.lat is not None


@dataclass(frozen=True, slots=True)
class Label:
    """The truth about a transaction, known at ``event_time`` (its arrival).

    ``card_id`` is the transaction's card when the label's source knows it: the
    scored record is then read straight from the card's side of the state (on a
    Redis Cluster, one slot); without it, through the transaction index.
    """

    txn_id: str
    is_fraud: bool
    event_time: float
    card_id: str | None = None
