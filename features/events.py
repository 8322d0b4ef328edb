"""The events that flow through the system, as plain frozen values.

Wire formats (JSON on Kafka, HTTP bodies) are validated at the edges and
turned into these; everything inside works with them. Times are event times
in seconds since the Unix epoch (UTC); nothing here reads the clock.

Examples
--------
>>> t = Transaction(txn_id="t1", card_id="c1", terminal_id="p9", amount=12.5, event_time=60.0)
>>> t.card_id
'c1'
>>> Label(txn_id="t1", is_fraud=True, event_time=3600.0).is_fraud
True
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Transaction:
    """A card payment attempt, at the time it happened."""

    txn_id: str
    card_id: str
    terminal_id: str
    amount: float
    event_time: float


@dataclass(frozen=True, slots=True)
class Label:
    """The truth about a transaction, known at ``event_time`` (its arrival)."""

    txn_id: str
    is_fraud: bool
    event_time: float
