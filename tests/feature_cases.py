"""Random event sequences, a store driver, and the brute-force feature reference.

The reference recomputes every feature from the raw history, written as
plainly as possible (datetimes, list comprehensions, no state), so the
property tests compare two independent readings of the definitions.

Sequences may leave transactions applied but unsaved (:class:`Unsaved`), as
a worker does between scoring a part and saving it, and settle them later
(:class:`Settle`: the record saved late, or the transaction redelivered), or
never (a worker that died and whose events were lost).
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

from hypothesis import strategies as st

from features import terminal
from features.card import HORIZON_SECONDS, SINCE_PREV_CAP_SECONDS
from features.events import Label, Transaction
from features.geo import SPEED_CAP_KMH, haversine_km
from features.memory import MemoryFeatureStore
from features.redis_store import RedisFeatureStore
from features.store import Applied, FeatureStore, ScoredRecord, Status
from features.vector import view

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
LATENESS = 3600.0


@dataclass(frozen=True)
class Fraud:
    """A fraud label for the ``index``-th transaction, arriving ``delay`` after it."""

    index: int
    delay: float


@dataclass(frozen=True)
class Unsaved:
    """A transaction applied and scored, its record not saved (yet)."""

    txn: Transaction


@dataclass(frozen=True)
class Settle:
    """The ``index``-th transaction again: its record saved late, or it is redelivered."""

    index: int
    redeliver: bool


Op = Transaction | Fraud | Unsaved | Settle


def transactions(ops: list[Op]) -> list[Transaction]:
    """The transactions of ``ops`` in order (what :class:`Fraud` and :class:`Settle` index)."""
    return [
        o.txn if isinstance(o, Unsaved) else o for o in ops if isinstance(o, Transaction | Unsaved)
    ]


#: Clock steps between transactions.
STEPS = (0.0, 0.5, 30.0, 600.0, 3600.0, 86400.0, 8 * 86400.0)
#: Steps that also jump a whole horizon, so that records bunched together go
#: stale together while a transaction that could see them is still allowed.
HORIZON_STEPS = (0.0, 0.5, 30.0, 600.0, 1800.0, 3600.0, 86400.0, HORIZON_SECONDS)


@st.composite
def operations(
    draw: st.DrawFn, max_size: int = 40, cards: int = 3, steps: tuple[float, ...] = STEPS
) -> list[Op]:
    """Transactions over ``cards`` cards and 3 terminals, some out of order, some too
    late, some located; and fraud labels for earlier transactions."""
    ops: list[Op] = []
    clock = T0
    count = draw(st.integers(0, max_size))
    for i in range(count):
        if ops and draw(st.integers(0, 4)) == 0:
            index = draw(st.integers(0, sum(isinstance(o, Transaction) for o in ops) - 1))
            ops.append(Fraud(index, draw(st.floats(1, 10 * 86400))))
            continue
        clock += draw(st.sampled_from(steps))
        back = draw(st.sampled_from([0.0, 0.0, 0.0, 100.0, LATENESS, 2 * LATENESS]))
        located = draw(st.booleans())
        ops.append(
            Transaction(
                txn_id=f"t{i}",
                card_id=f"c{draw(st.integers(0, cards - 1))}",
                terminal_id=f"p{draw(st.integers(0, 2))}",
                amount=draw(st.floats(0, 5000, allow_nan=False)),
                event_time=clock - back,
                lat=draw(st.floats(-60, 60)) if located else None,
                lon=draw(st.floats(-170, 170)) if located else None,
            )
        )
    return ops


@st.composite
def operations_with_unsaved(draw: st.DrawFn, max_size: int = 60) -> list[Op]:
    """:func:`operations` over 2 cards where about a third of the transactions are
    left unsaved; each is settled later (saved late or redelivered) or never."""
    ops: list[Op] = []
    count = 0
    unsettled: list[int] = []
    for op in draw(operations(max_size, cards=2, steps=HORIZON_STEPS)):
        if isinstance(op, Transaction):
            if draw(st.integers(0, 2)) == 0:
                unsettled.append(count)
                op = Unsaved(op)
            count += 1
        ops.append(op)
        if unsettled and draw(st.integers(0, 3)) == 0:
            index = unsettled.pop(draw(st.integers(0, len(unsettled) - 1)))
            ops.append(Settle(index, draw(st.booleans())))
        elif count and draw(st.integers(0, 9)) == 0:  # a duplicate of any transaction
            ops.append(Settle(draw(st.integers(0, count - 1)), True))
    return ops


Vector = dict[str, float]


@dataclass
class Outcome:
    """What a store made of a sequence: each transaction's vector (or ``None`` if late),
    and what each redelivery got, in order."""

    vectors: dict[str, Vector | None]
    redelivered: list[Vector | None] = field(default_factory=list)


async def drive(store: FeatureStore, ops: list[Op]) -> Outcome:
    """Feed ``ops`` to ``store`` one at a time, as the pipeline does."""
    out = Outcome({})
    txns = transactions(ops)
    unsaved: dict[str, tuple[Applied, ScoredRecord]] = {}
    for op in ops:
        if isinstance(op, Fraud):
            record = await store.scored(txns[op.index].txn_id)
            if record is not None:
                await store.record_fraud(
                    record, Label(record.txn_id, True, record.event_time + op.delay)
                )
        elif isinstance(op, Settle) and not op.redeliver:
            if (held := unsaved.pop(txns[op.index].txn_id, None)) is not None:
                await store.save([held])
        elif isinstance(op, Settle):
            out.redelivered.append(await _score(store, txns[op.index], unsaved, save=True))
        else:
            txn = op.txn if isinstance(op, Unsaved) else op
            out.vectors[txn.txn_id] = await _score(
                store, txn, unsaved, save=isinstance(op, Transaction)
            )
    return out


async def _score(
    store: FeatureStore,
    txn: Transaction,
    unsaved: dict[str, tuple[Applied, ScoredRecord]],
    save: bool,
) -> Vector | None:
    """Apply ``txn``; its vector (``None`` if late); its record saved, or kept unsaved."""
    [applied] = await store.apply([txn])
    if applied.status is Status.LATE:
        return None
    if applied.record is not None:
        return applied.record.features
    assert applied.state is not None
    record = ScoredRecord(
        txn.txn_id, txn.card_id, txn.terminal_id, txn.event_time, view(applied.state, txn), 0.5, 1
    )
    unsaved.pop(txn.txn_id, None)
    if save:
        await store.save([(applied, record)])
    else:
        unsaved[txn.txn_id] = (applied, record)
    return record.features


def reference(ops: list[Op], answered_late: list[bool] | None = None) -> Outcome:
    """Every vector, recomputed from the raw history by brute force.

    A redelivered transaction gets the vector it was first scored with. One
    never saved may instead be answered late (``None``), but only once a
    record it could see (its own included) has gone stale: older than any
    transaction still allowed on its card. Whether a store did is its choice
    (compaction runs when it runs); ``answered_late`` tells, per
    redelivery, what the store answered, so the reference follows it where
    that is allowed and expects the first vector where it is not.
    """
    accepted: list[Transaction] = []
    saved: set[str] = set()
    frauds: list[tuple[Transaction, float]] = []
    out = Outcome({})
    txns = transactions(ops)

    def same_card(txn: Transaction) -> list[Transaction]:
        return [e for e in accepted if e.card_id == txn.card_id]

    def too_late(txn: Transaction) -> bool:
        history = same_card(txn)
        return bool(history) and txn.event_time < max(e.event_time for e in history) - LATENESS

    def may_have_lost(txn: Transaction) -> bool:
        history = same_card(txn)
        stale = max(e.event_time for e in history) - LATENESS - HORIZON_SECONDS
        seen = history[: history.index(txn) + 1]  # applied before it, and itself
        return any(txn.event_time - HORIZON_SECONDS <= e.event_time < stale for e in seen)

    for op in ops:
        if isinstance(op, Fraud):
            target = txns[op.index]
            if target.txn_id in saved and target not in [f for f, _ in frauds]:
                frauds.append((target, target.event_time + op.delay))
        elif isinstance(op, Settle):
            target = txns[op.index]
            first = out.vectors[target.txn_id]
            late = (
                op.redeliver and answered_late is not None and answered_late[len(out.redelivered)]
            )
            if first is not None and target.txn_id not in saved:
                if late and may_have_lost(target):
                    first = None
                else:
                    saved.add(target.txn_id)
            if op.redeliver:
                out.redelivered.append(first)
        else:
            txn = op.txn if isinstance(op, Unsaved) else op
            if too_late(txn):
                out.vectors[txn.txn_id] = None
                continue
            vector = card_reference(same_card(txn), txn)
            vector.update(terminal_reference(accepted, frauds, txn))
            vector.update(transaction_reference(txn))
            out.vectors[txn.txn_id] = vector
            accepted.append(txn)
            if isinstance(op, Transaction):
                saved.add(txn.txn_id)
    return out


def card_reference(history: list[Transaction], txn: Transaction) -> dict[str, float]:
    at = txn.event_time
    past = sorted(
        (e for e in history if at - HORIZON_SECONDS <= e.event_time < at),
        key=lambda e: e.event_time,
    )
    out: dict[str, float] = {}
    for name, days in [
        ("10m", 600),
        ("1h", 3600),
        ("1d", 86400),
        ("7d", 7 * 86400),
        ("30d", 30 * 86400),
    ]:
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
            {e.terminal_id for e in past if e.event_time >= at - days * 86400}
        )
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
        floor_30d = (
            max(
                [
                    math.floor(at / (30 * 3600)),
                    *(math.floor(e.event_time / (30 * 3600)) for e in here),
                ]
            )
            - 48
        )
        known = [
            f
            for f, arrived in frauds
            if f.terminal_id == txn.terminal_id
            and arrived < at
            and (current - 24) * size <= f.event_time < current * size
            and f.event_time >= floor_30d * 30 * 3600
        ]
        out[f"terminal_txn_count_{name}"] = count
        out[f"terminal_fraud_count_{name}"] = len(known)
        out[f"terminal_fraud_rate_{name}"] = min(len(known) / count, 1.0) if count else 0.0
    # Risk over windows ending a week back: (bucket hours, buckets back, buckets long).
    for name, (hours, back, long) in {
        "1d": (7, 24, 3),
        "7d": (7, 24, 24),
        "30d": (30, 6, 24),
    }.items():
        size = hours * 3600
        current = math.floor(at / size)
        newest = max([current, *(math.floor(e.event_time / size) for e in here)])
        low = max(current - back - long, newest - 48)
        count = sum(1 for e in here if low <= math.floor(e.event_time / size) < current - back)
        floor_30d = (
            max(
                [
                    math.floor(at / (30 * 3600)),
                    *(math.floor(e.event_time / (30 * 3600)) for e in here),
                ]
            )
            - 48
        )
        known = [
            f
            for f, arrived in frauds
            if f.terminal_id == txn.terminal_id
            and arrived < at
            and (current - back - long) * size <= f.event_time < (current - back) * size
            and f.event_time >= floor_30d * 30 * 3600
        ]
        out[f"terminal_risk_{name}"] = min(len(known) / count, 1.0) if count else 0.0
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
    assert len(got.redelivered) == len(want.redelivered)
    pairs = [(txn_id, got.vectors[txn_id], expected) for txn_id, expected in want.vectors.items()]
    pairs += [
        (f"redelivery {i}", actual, expected)
        for i, (actual, expected) in enumerate(zip(got.redelivered, want.redelivered, strict=True))
    ]
    for txn_id, actual, expected in pairs:
        if expected is None or actual is None:
            assert actual is None and expected is None, txn_id
            continue
        assert actual.keys() == expected.keys()
        for name, value in expected.items():
            assert math.isclose(actual[name], value, rel_tol=1e-9, abs_tol=1e-6), (
                f"{txn_id} {name}: store {actual[name]!r} != reference {value!r}"
            )


R = TypeVar("R")


async def in_redis_and_memory(
    redis_url: str, run: Callable[[FeatureStore], Awaitable[R]]
) -> tuple[R, R]:
    """``run`` on a fresh Redis store (a key prefix of its own), then on a fresh in-memory
    store, both with :data:`LATENESS`."""
    redis_store = RedisFeatureStore.from_url(
        redis_url, f"fs-{secrets.token_hex(4)}", allowed_lateness=LATENESS
    )
    try:
        in_redis = await run(redis_store)
    finally:
        await redis_store.close()
    return in_redis, await run(MemoryFeatureStore(allowed_lateness=LATENESS))
