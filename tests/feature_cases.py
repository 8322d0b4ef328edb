"""Random event sequences, a store driver, and the brute-force feature reference.

The reference recomputes every feature from the raw history, written as
plainly as possible (datetimes, list comprehensions, no state), so the
property tests compare two independent readings of the definitions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

from hypothesis import strategies as st

from features import terminal
from features.card import HORIZON_SECONDS, SINCE_PREV_CAP_SECONDS, SPEED_CAP_KMH
from features.events import Label, Transaction
from features.geo import haversine_km
from features.store import FeatureStore, ScoredRecord, Status
from features.vector import view

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
LATENESS = 3600.0


@dataclass(frozen=True)
class Fraud:
    """A fraud label for the ``index``-th transaction, arriving ``delay`` after it."""

    index: int
    delay: float


Op = Transaction | Fraud


@st.composite
def operations(draw: st.DrawFn, max_size: int = 40) -> list[Op]:
    """Transactions over 3 cards and 3 terminals, some out of order, some too late,
    some located; and fraud labels for earlier transactions."""
    ops: list[Op] = []
    clock = T0
    count = draw(st.integers(0, max_size))
    for i in range(count):
        if ops and draw(st.integers(0, 4)) == 0:
            index = draw(st.integers(0, sum(isinstance(o, Transaction) for o in ops) - 1))
            ops.append(Fraud(index, draw(st.floats(1, 10 * 86400))))
            continue
        clock += draw(st.sampled_from([0.0, 0.5, 30.0, 600.0, 3600.0, 86400.0, 8 * 86400.0]))
        back = draw(st.sampled_from([0.0, 0.0, 0.0, 100.0, LATENESS, 2 * LATENESS]))
        located = draw(st.booleans())
        ops.append(Transaction(
            txn_id=f"t{i}",
            card_id=f"c{draw(st.integers(0, 2))}",
            terminal_id=f"p{draw(st.integers(0, 2))}",
            amount=draw(st.floats(0, 5000, allow_nan=False)),
            event_time=clock - back,
            lat=draw(st.floats(-60, 60)) if located else None,
            lon=draw(st.floats(-170, 170)) if located else None,
        ))
    return ops


@dataclass
class Outcome:
    """What a store made of a sequence: each transaction's vector (or ``None`` if late)."""

    vectors: dict[str, dict[str, float] | None]


async def drive(store: FeatureStore, ops: list[Op]) -> Outcome:
    """Feed ``ops`` to ``store`` one at a time, as the pipeline does."""
    vectors: dict[str, dict[str, float] | None] = {}
    txns = [o for o in ops if isinstance(o, Transaction)]
    for op in ops:
        if isinstance(op, Fraud):
            record = await store.scored(txns[op.index].txn_id)
            if record is not None:
                await store.record_fraud(record, Label(record.txn_id, True,
                                                       record.event_time + op.delay))
            continue
        [applied] = await store.apply([op])
        if applied.status is Status.LATE:
            vectors[op.txn_id] = None
            continue
        if applied.record is not None:
            vectors[op.txn_id] = applied.record.features
            continue
        assert applied.state is not None
        record = ScoredRecord(op.txn_id, op.card_id, op.terminal_id, op.event_time,
                              view(applied.state, op), 0.5, 1)
        await store.save([(applied, record)])
        vectors[op.txn_id] = record.features
    return Outcome(vectors)


def reference(ops: list[Op]) -> Outcome:
    """Every vector, recomputed from the raw history by brute force."""
    accepted: list[Transaction] = []
    frauds: list[tuple[Transaction, float]] = []
    vectors: dict[str, dict[str, float] | None] = {}
    txns = [o for o in ops if isinstance(o, Transaction)]
    for op in ops:
        if isinstance(op, Fraud):
            target = txns[op.index]
            if vectors.get(target.txn_id) is not None and target not in [f for f, _ in frauds]:
                frauds.append((target, target.event_time + op.delay))
            continue
        same_card = [e for e in accepted if e.card_id == op.card_id]
        if same_card and op.event_time < max(e.event_time for e in same_card) - LATENESS:
            vectors[op.txn_id] = None
            continue
        vector = card_reference(same_card, op)
        vector.update(terminal_reference(accepted, frauds, op))
        vector.update(transaction_reference(op))
        vectors[op.txn_id] = vector
        accepted.append(op)
    return Outcome(vectors)


def card_reference(history: list[Transaction], txn: Transaction) -> dict[str, float]:
    at = txn.event_time
    past = sorted((e for e in history if at - HORIZON_SECONDS <= e.event_time < at),
                  key=lambda e: e.event_time)
    out: dict[str, float] = {}
    for name, days in [("10m", 600), ("1h", 3600), ("1d", 86400), ("7d", 7 * 86400),
                       ("30d", 30 * 86400)]:
        amounts = [e.amount for e in past if e.event_time >= at - days]
        out[f"card_txn_count_{name}"] = len(amounts)
        out[f"card_amount_sum_{name}"] = sum(amounts)
        out[f"card_amount_mean_{name}"] = sum(amounts) / len(amounts) if amounts else 0.0
        out[f"card_amount_max_{name}"] = max(amounts, default=0.0)
    out["card_seconds_since_prev"] = at - past[-1].event_time if past else SINCE_PREV_CAP_SECONDS
    out["card_first_seen"] = 0.0 if past else 1.0
    amounts = [e.amount for e in past]
    mean = sum(amounts) / len(amounts) if amounts else 0.0
    std = math.sqrt(sum((a - mean) ** 2 for a in amounts) / len(amounts)) if amounts else 0.0
    out["card_amount_zscore_30d"] = (txn.amount - mean) / std if len(amounts) >= 2 and std else 0.0
    out["card_amount_ratio_mean_30d"] = (txn.amount + 1) / (mean + 1) if amounts else 1.0
    for name, days in [("1d", 1), ("7d", 7)]:
        out[f"card_distinct_terminals_{name}"] = len(
            {e.terminal_id for e in past if e.event_time >= at - days * 86400})
    out["card_terminal_new_30d"] = 0.0 if txn.terminal_id in {e.terminal_id for e in past} else 1.0
    distance = speed = 0.0
    if txn.lat is not None and txn.lon is not None:
        located = [e for e in past if e.lat is not None and e.lon is not None]
        if located:
            lat = sum(e.lat or 0.0 for e in located) / len(located)
            lon = sum(e.lon or 0.0 for e in located) / len(located)
            distance = haversine_km(lat, lon, txn.lat, txn.lon)
        if past and past[-1].lat is not None and past[-1].lon is not None:
            km = haversine_km(past[-1].lat, past[-1].lon, txn.lat, txn.lon)
            speed = min(km / ((at - past[-1].event_time) / 3600), SPEED_CAP_KMH)
    out["card_distance_from_usual_km"] = distance
    out["card_speed_since_prev_kmh"] = speed
    return out


def terminal_reference(
    history: list[Transaction], frauds: list[tuple[Transaction, float]], txn: Transaction
) -> dict[str, float]:
    """Whole buckets before the current one; buckets 48+ behind the newest are forgotten."""
    at = txn.event_time
    here = [e for e in history if e.terminal_id == txn.terminal_id]
    out: dict[str, float] = {}
    for name, length in terminal.WINDOWS.items():
        size = length / 24
        current = math.floor(at / size)
        newest = max([current, *(math.floor(e.event_time / size) for e in here)])
        low = max(current - 24, newest - 48)
        count = sum(1 for e in here if low <= math.floor(e.event_time / size) < current)
        floor_30d = max([math.floor(at / (30 * 3600)),
                         *(math.floor(e.event_time / (30 * 3600)) for e in here)]) - 48
        known = [
            f for f, arrived in frauds
            if f.terminal_id == txn.terminal_id and arrived < at
            and (current - 24) * size <= f.event_time < current * size
            and f.event_time >= floor_30d * 30 * 3600
        ]
        out[f"terminal_txn_count_{name}"] = count
        out[f"terminal_fraud_count_{name}"] = len(known)
        out[f"terminal_fraud_rate_{name}"] = min(len(known) / count, 1.0) if count else 0.0
    return out


def transaction_reference(txn: Transaction) -> dict[str, float]:
    when = datetime.fromtimestamp(txn.event_time, tz=UTC)
    hours = when.hour + when.minute / 60 + (when.second + when.microsecond / 1e6) / 3600
    days = when.weekday() + hours / 24
    return {
        "txn_amount_log": math.log1p(txn.amount),
        "txn_hour_sin": math.sin(2 * math.pi * hours / 24),
        "txn_hour_cos": math.cos(2 * math.pi * hours / 24),
        "txn_dow_sin": math.sin(2 * math.pi * days / 7),
        "txn_dow_cos": math.cos(2 * math.pi * days / 7),
        "txn_is_night": 1.0 if when.hour < 6 else 0.0,
        "txn_is_weekend": 1.0 if when.weekday() >= 5 else 0.0,
        "txn_has_location": 1.0 if txn.lat is not None else 0.0,
    }


def assert_close(got: Outcome, want: Outcome) -> None:
    """Equal vectors up to float rounding (the reference sums in another order)."""
    assert got.vectors.keys() == want.vectors.keys()
    for txn_id, expected in want.vectors.items():
        actual = got.vectors[txn_id]
        if expected is None or actual is None:
            assert actual is None and expected is None, txn_id
            continue
        assert actual.keys() == expected.keys()
        for name, value in expected.items():
            assert math.isclose(actual[name], value, rel_tol=1e-9, abs_tol=1e-6), (
                f"{txn_id} {name}: store {actual[name]!r} != reference {value!r}")
