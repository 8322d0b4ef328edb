"""The feature definitions: exact card windows, bucketed terminal windows, no leakage."""

from __future__ import annotations

import asyncio
import math
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from features import card, card_bytes, terminal
from features.card import HORIZON_SECONDS, CardHistory
from features.events import Label, Transaction
from features.memory import MemoryFeatureStore
from features.store import ScoredRecord, Status
from features.terminal import TerminalState
from features.vector import FEATURE_NAMES, FEATURES, EntityState, describe, view
from tests.feature_cases import LATENESS, T0, Op, assert_close, drive, operations, reference


def txn(i: int, t: float, amount: float = 1.0, terminal_id: str = "p") -> Transaction:
    return Transaction(f"t{i}", "c", terminal_id, amount, T0 + t)


def fold(events: list[Transaction]) -> CardHistory:
    history = CardHistory()
    for event in events:
        history = card.step(history, event)
    return history


def test_every_feature_has_a_name_a_meaning_and_a_place_in_the_vector() -> None:
    vector = view(EntityState(), txn(0, 0.0))
    assert tuple(vector) == FEATURE_NAMES
    assert all(len(FEATURES[name]) > 10 for name in FEATURE_NAMES)
    assert describe().count("\n") == len(FEATURE_NAMES) + 1


def test_card_window_start_is_inclusive_and_the_transaction_itself_is_excluded() -> None:
    history = fold([txn(1, 0.0, 5.0), txn(2, 3600.0, 7.0)])
    v = card.view(history, txn(3, 3600.0))
    assert v["card_txn_count_1h"] == 1.0 and v["card_amount_sum_1h"] == 5.0  # [0, 3600)
    v = card.view(history, txn(4, 3600.5))
    assert v["card_amount_sum_1h"] == 7.0 and v["card_amount_max_1d"] == 7.0


def test_a_late_event_is_placed_in_time_order_and_too_late_is_detected() -> None:
    history = fold([txn(1, 100.0), txn(2, 50.0)])
    assert [r[0] - T0 for r in history.records] == [50.0, 100.0]
    assert card.view(history, txn(3, 75.0))["card_seconds_since_prev"] == 25.0
    assert not card.is_too_late(history, txn(4, 100.0 - LATENESS), LATENESS)
    assert card.is_too_late(history, txn(5, 99.0 - LATENESS), LATENESS)


def test_compaction_drops_only_records_no_allowed_transaction_can_see() -> None:
    events = [txn(i, i * 86400.0, float(i)) for i in range(40)]
    raw = b""
    for event in events:
        raw = card_bytes.append(raw, event, LATENESS)
    compacted = card_bytes.decode(raw)
    newest, dropped, n, _ = card_bytes.HEADER.unpack_from(raw)
    assert newest == T0 + 39 * 86400 and dropped > 0 and dropped + n == 40
    # the horizon's 31 days, and at most SLACK days put in the room since the last rewrite
    assert (
        n <= 31 + card_bytes.SLACK
        and len(raw) <= card_bytes.HEADER.size + (n + card_bytes.SLACK) * 24
    )
    probe = txn(99, 39 * 86400.0 - LATENESS)  # the oldest transaction still allowed
    assert card.view(compacted, probe) == card.view(fold(events), probe)
    assert card_bytes.decode(card_bytes.encode(compacted)) == compacted


def test_compaction_keeps_the_order_records_were_applied_in() -> None:
    """Only stale records at the front go: a stale one behind a fresh one stays, in place."""
    later = HORIZON_SECONDS + LATENESS + 25
    raw = b""
    for event in [
        txn(1, 0.0),
        txn(2, 10.0),
        txn(3, 3000.0),
        txn(4, 20.0),
        txn(5, 2000.0),
        *(txn(6 + k, later) for k in range(card_bytes.SLACK + 1)),
    ]:  # a rewrite among them
        raw = card_bytes.append(raw, event, LATENESS)
    _, dropped, n, _ = card_bytes.HEADER.unpack_from(raw)
    times = [
        card_bytes.RECORD.unpack_from(raw, card_bytes.HEADER.size + i * card_bytes.RECORD.size)[0]
        - T0
        for i in range(n)
    ]
    assert dropped == 2 and times == [3000.0, 20.0, 2000.0] + [later] * (card_bytes.SLACK + 1)


def test_location_features_use_the_usual_place_and_the_previous_one() -> None:
    paris = Transaction("a", "c", "p", 10.0, T0, lat=48.8566, lon=2.3522)
    london = Transaction("b", "c", "q", 10.0, T0 + 3600, lat=51.5074, lon=-0.1278)
    v = card.view(card.step(CardHistory(), paris), london)
    assert round(v["card_distance_from_usual_km"]) == 344
    assert round(v["card_speed_since_prev_kmh"]) == 344  # 344 km in one hour
    v = card.view(card.step(CardHistory(), paris), Transaction("c", "c", "p", 1.0, T0 + 1))
    assert v["card_distance_from_usual_km"] == 0.0 and v["card_speed_since_prev_kmh"] == 0.0


def test_amount_relative_to_history() -> None:
    history = fold([txn(1, 0.0, 10.0), txn(2, 1.0, 30.0)])
    v = card.view(history, txn(3, 2.0, 40.0))
    assert v["card_amount_zscore_30d"] == 2.0  # mean 20, std 10
    assert v["card_amount_ratio_mean_30d"] == 41.0 / 21.0
    assert card.view(CardHistory(), txn(4, 0.0, 40.0))["card_amount_ratio_mean_30d"] == 1.0


def test_terminal_windows_count_whole_buckets_before_the_current_one() -> None:
    buckets: dict[int, int] = {}
    newest: tuple[int | None, ...] = (None, None, None)
    for t in (0.0, 1800.0, 3600.0, 5400.0):  # two in hour 0, two in hour 1
        buckets, newest = terminal.step(buckets, newest, T0 + t)
    assert terminal.window_counts(buckets, newest, T0 + 5500.0)[0] == 2  # hour 0 only
    assert terminal.window_counts(buckets, newest, T0 + 7200.0)[0] == 4
    assert terminal.window_counts(buckets, newest, T0 + 86400.0 + 3600.0)[0] == 2


def test_a_label_that_had_not_arrived_is_never_counted() -> None:
    """Leakage: the fraud entry exists, but the label arrived after the transaction."""
    state = TerminalState(counts=(10, 10, 10), frauds=((T0 - 7200.0, T0 + 60.0),))
    before = view(EntityState(terminal=state), txn(1, 59.0))
    after = view(EntityState(terminal=state), txn(2, 61.0))
    assert before["terminal_fraud_count_1d"] == 0.0 and before["terminal_fraud_rate_30d"] == 0.0
    assert after["terminal_fraud_count_1d"] == 1.0 and after["terminal_fraud_rate_1d"] == 0.1


def test_leakage_through_a_store_label_applied_before_a_transaction_it_postdates() -> None:
    async def run() -> tuple[dict[str, float], dict[str, float]]:
        store = MemoryFeatureStore()
        first = Transaction("f", "c1", "p", 50.0, T0)
        [applied] = await store.apply([first])
        assert applied.state is not None
        record = ScoredRecord("f", "c1", "p", T0, view(applied.state, first), 0.9, 1)
        await store.save([(applied, record)])
        # the label is processed now, but it arrives (event time) two days later
        await store.record_fraud(record, Label("f", True, T0 + 2 * 86400))
        early = Transaction("e", "c2", "p", 5.0, T0 + 86400)
        late = Transaction("l", "c3", "p", 5.0, T0 + 3 * 86400)
        [a_early, a_late] = await store.apply([early, late])
        assert a_early.state is not None and a_late.state is not None
        return view(a_early.state, early), view(a_late.state, late)

    early, late = asyncio.run(run())
    assert early["terminal_fraud_count_7d"] == 0.0
    assert late["terminal_fraud_count_7d"] == 1.0


def test_bucketed_terminal_counts_stay_within_one_bucket_of_exact_windows() -> None:
    rnd = random.Random(7)
    times = sorted(T0 + rnd.uniform(0, 40 * 86400) for _ in range(3000))
    buckets: dict[int, int] = {}
    newest: tuple[int | None, ...] = (None, None, None)
    for i, t in enumerate(times):
        counts = terminal.window_counts(buckets, newest, t)
        for w, (length, size) in enumerate(
            zip(terminal.WINDOWS.values(), terminal.BUCKET_SECONDS, strict=True)
        ):
            exact = sum(1 for s in times[:i] if t - length <= s < t)
            # missed: the current partial bucket; added: part of one bucket at the far end
            missed = sum(1 for s in times[:i] if t - size <= s < t)
            added = sum(1 for s in times[:i] if t - length - size <= s < t - length)
            assert -missed <= counts[w] - exact <= added
        buckets, newest = terminal.step(buckets, newest, t)


@settings(max_examples=150, deadline=None)
@given(operations())
def test_store_vectors_equal_a_brute_force_reference(ops: list[Op]) -> None:
    got = asyncio.run(drive(MemoryFeatureStore(allowed_lateness=LATENESS), ops))
    assert_close(got, reference(ops))


def test_a_duplicate_transaction_is_answered_from_its_saved_record() -> None:
    async def run() -> list[Status]:
        store = MemoryFeatureStore()
        t = txn(1, 0.0)
        [first] = await store.apply([t])
        [pending] = await store.apply([t])  # redelivered before its record was saved
        assert first.state == pending.state
        assert first.state is not None
        await store.save(
            [(first, ScoredRecord("t1", "c", "p", t.event_time, view(first.state, t), 0.5, 1))]
        )
        [done] = await store.apply([t])
        return [first.status, pending.status, done.status]

    assert asyncio.run(run()) == [Status.NEW, Status.PENDING, Status.DONE]


def test_transaction_calendar_features() -> None:
    saturday_night = view(EntityState(), txn(1, 2 * 86400.0 + 3 * 3600.0))  # Sat 03:00
    assert saturday_night["txn_is_weekend"] == 1.0 and saturday_night["txn_is_night"] == 1.0
    noon = view(EntityState(), txn(2, 12 * 3600.0))
    assert math.isclose(noon["txn_hour_cos"], -1.0) and noon["txn_is_night"] == 0.0


def test_the_docs_list_every_feature_with_its_meaning() -> None:
    from tests.support import REPO

    assert describe() in (REPO / "docs" / "features.md").read_text()


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.floats(min_value=0, max_value=70 * 86400, allow_nan=False), min_size=1, max_size=120
    )
)
def test_buckets_pruned_in_place_or_lazily_read_the_counts_of_step(offsets: list[float]) -> None:
    """Out of order too: stepped in place, or counted in place and pruned only now and
    then (as the in-memory store does), the buckets read the same counts."""
    pure: dict[int, int] = {}
    pure_newest: tuple[int | None, ...] = (None, None, None)
    in_place: dict[int, int] = {}
    newest: tuple[int | None, ...] = (None, None, None)
    lazy: dict[int, int] = {}
    lazy_newest: tuple[int | None, ...] = (None, None, None)
    for i, offset in enumerate(offsets):
        t = T0 + offset
        pure, pure_newest = terminal.step(pure, pure_newest, t)
        newest = terminal.step_in_place(in_place, newest, t)
        lazy_newest = terminal.count_in_place(lazy, lazy_newest, t)
        if i % 7 == 6:
            terminal.prune(lazy, lazy_newest)
        assert newest == pure_newest == lazy_newest
        for probe in (t, t + 3600.0, t + 86400.0 * 3, t - 86400.0):
            assert (
                terminal.window_counts(in_place, newest, probe)
                == terminal.window_counts(pure, pure_newest, probe)
                == terminal.window_counts(lazy, lazy_newest, probe)
            )
