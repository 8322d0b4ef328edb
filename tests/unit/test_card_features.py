"""Card features: exact half-open windows, strictly-before, order-independence."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from features.card import (
    FEATURE_NAMES,
    SINCE_PREV_CAP_SECONDS,
    WINDOWS,
    CardState,
    decode_state,
    encode_state,
    step,
    view,
)
from features.events import Transaction


def txn(i: int, t: float, amount: float = 1.0) -> Transaction:
    return Transaction(f"t{i}", "c", "p", amount, t)


def fold(events: list[Transaction]) -> CardState:
    state = CardState()
    for event in events:
        state = step(state, event)
    return state


def reference(history: list[Transaction], probe: Transaction) -> dict[str, float]:
    """Brute force from the raw history: what the features mean, written plainly."""
    before = [e for e in history if e.event_time < probe.event_time]
    out: dict[str, float] = {}
    for name, length in WINDOWS.items():
        inside = [e for e in before if e.event_time >= probe.event_time - length]
        out[f"card_txn_count_{name}"] = float(len(inside))
        out[f"card_amount_sum_{name}"] = float(sum(e.amount for e in inside))
    previous = max((e.event_time for e in before), default=None)
    out["card_seconds_since_prev"] = (
        SINCE_PREV_CAP_SECONDS if previous is None
        else min(probe.event_time - previous, SINCE_PREV_CAP_SECONDS)
    )
    out["card_first_seen"] = 1.0 if previous is None else 0.0
    out["txn_amount_log"] = math.log1p(probe.amount)
    return out


def test_vector_has_exactly_the_declared_feature_names() -> None:
    assert tuple(view(CardState(), txn(0, 0.0))) == FEATURE_NAMES


def test_window_start_is_inclusive_and_the_transaction_itself_is_excluded() -> None:
    state = fold([txn(1, 0.0, 5.0), txn(2, 3600.0, 7.0)])
    v = view(state, txn(3, 3600.0))
    assert v["card_txn_count_1h"] == 1.0 and v["card_amount_sum_1h"] == 5.0  # [0, 3600)
    assert view(state, txn(4, 3600.5))["card_amount_sum_1h"] == 7.0  # 0 fell out


def test_a_late_event_is_placed_in_time_order() -> None:
    state = fold([txn(1, 100.0), txn(2, 50.0)])
    assert [t for t, _ in state.recent] == [50.0, 100.0]
    assert view(state, txn(3, 75.0))["card_seconds_since_prev"] == 25.0


def test_history_beyond_the_longest_window_is_dropped_but_not_forgotten() -> None:
    state = fold([txn(1, 0.0), txn(2, 200_000.0)])
    assert len(state.recent) == 1 and state.dropped == 0.0
    assert view(state, txn(3, 200_010.0))["card_first_seen"] == 0.0


def test_state_round_trips_through_its_encoding() -> None:
    state = fold([txn(1, 10.0, 2.5), txn(2, 20.0, 3.5)])
    assert decode_state(encode_state(state)) == state


times = st.floats(min_value=0, max_value=3 * 86400, allow_nan=False)
amounts = st.floats(min_value=0, max_value=10_000, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(times, amounts), max_size=30), times, amounts)
def test_vectors_equal_a_brute_force_reference_for_random_histories(
    history: list[tuple[float, float]], at: float, amount: float
) -> None:
    events = [txn(i, t, a) for i, (t, a) in enumerate(history)]
    events.sort(key=lambda e: e.event_time)  # in order: nothing is pruned that matters
    probe = txn(-1, max([at, *(e.event_time for e in events)]), amount)
    got = view(fold(events), probe)
    want = reference(events, probe)
    assert got.keys() == want.keys()
    for name in want:
        assert math.isclose(got[name], want[name], rel_tol=1e-9, abs_tol=1e-6), name
