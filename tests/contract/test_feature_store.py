"""One contract, every FeatureStore: in-memory, Redis (a real server) and a Redis Cluster
(3 real masters: the card's and the terminal's sides in their own slots)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features import terminal
from features.card import HORIZON_SECONDS
from features.card_bytes import SLACK
from features.events import Label, Transaction
from features.memory import MemoryFeatureStore
from features.redis_cluster_store import RedisClusterFeatureStore
from features.redis_store import RedisFeatureStore
from features.store import Applied, FeatureStore, ScoredRecord, Status
from features.vector import view
from tests.feature_cases import (
    LATENESS,
    T0,
    Op,
    assert_close,
    drive,
    in_redis_and_memory,
    operations,
    operations_with_unsaved,
    reference,
    terminal_reference,
    transactions,
)

StoreFactory = Callable[[], FeatureStore]
T = TypeVar("T")


def examples(count: int) -> Callable[[T], T]:
    """Hypothesis settings of these tests: ``count`` examples, no deadline (real Redis)."""
    return settings(
        max_examples=count,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )


@pytest.fixture(params=["memory", "redis", "redis-cluster"])
def make_store(request: pytest.FixtureRequest) -> StoreFactory:
    """Builds a fresh, isolated store of one kind per call."""
    if request.param == "memory":
        return lambda: MemoryFeatureStore(allowed_lateness=LATENESS)
    if request.param == "redis-cluster":
        url: str = request.getfixturevalue("redis_cluster_url")
        return lambda: RedisClusterFeatureStore.from_url(
            url, f"fs-{secrets.token_hex(4)}", allowed_lateness=LATENESS
        )
    url = request.getfixturevalue("redis_url")
    return lambda: RedisFeatureStore.from_url(
        url, f"fs-{secrets.token_hex(4)}", allowed_lateness=LATENESS
    )


@pytest.fixture
async def store(make_store: StoreFactory) -> AsyncIterator[FeatureStore]:
    built = make_store()
    yield built
    await built.close()


async def score(store: FeatureStore, *txns: Transaction) -> list[Applied]:
    applied = await store.apply(list(txns))
    await store.save([(a, record_for(a)) for a in applied if a.state is not None])
    return applied


def record_for(applied: Applied) -> ScoredRecord:
    assert applied.state is not None
    t = applied.txn
    return ScoredRecord(
        t.txn_id, t.card_id, t.terminal_id, t.event_time, view(applied.state, t), 0.5, 1
    )


def txn(i: int, t: float, card: str = "c1", terminal: str = "p1") -> Transaction:
    return Transaction(f"t{i}", card, terminal, 10.0 * i, T0 + t)


async def test_an_unknown_card_and_terminal_have_empty_state(store: FeatureStore) -> None:
    state = await store.peek(txn(1, 0.0, "nobody", "nowhere"))
    assert state.card.records == () and state.terminal.counts == (0,) * 6
    assert state.terminal.frauds == ()


async def test_apply_returns_the_state_before_and_save_makes_it_done(store: FeatureStore) -> None:
    [first] = await score(store, txn(1, 0.0))
    assert first.status is Status.NEW and first.state is not None
    assert first.state.card.records == ()
    [again] = await store.apply([txn(1, 0.0)])
    assert again.status is Status.DONE and again.record == record_for(first)
    assert await store.scored("t1") == record_for(first)


async def test_a_batch_is_applied_in_order(store: FeatureStore) -> None:
    applied = await store.apply([txn(1, 0.0), txn(2, 3600.0), txn(3, 7200.0, "c2")])
    assert [len(a.state.card.records) for a in applied if a.state] == [0, 1, 0]
    assert [a.state.terminal.counts[0] for a in applied if a.state] == [0, 1, 2]


async def test_a_redelivered_unsaved_transaction_is_not_counted_twice(store: FeatureStore) -> None:
    [first] = await store.apply([txn(1, 0.0)])
    [second] = await store.apply([txn(1, 0.0)])
    assert second.status is Status.PENDING and second.state == first.state
    probe = await store.peek(txn(9, 7200.0))
    assert len(probe.card.records) == 1 and probe.terminal.counts[0] == 1


async def test_a_redelivered_unsaved_transaction_gets_its_vector_after_its_card_was_compacted(
    store: FeatureStore,
) -> None:
    await score(store, *(txn(i, 10.0 * i) for i in range(4)), txn(5, 7200.0))
    unsaved = txn(9, HORIZON_SECONDS + LATENESS + 25)  # the first records are stale now
    [first] = await store.apply([unsaved])
    # within SLACK + 1 transactions the card is rewritten without them (it is still allowed)
    await score(store, *(txn(10 + k, HORIZON_SECONDS + LATENESS + 35) for k in range(SLACK + 1)))
    now = await store.peek(txn(99, HORIZON_SECONDS + LATENESS + 40))
    assert first.state is not None and len(first.state.card.records) == 5
    assert min(now.card.times) == T0 + 7200.0
    [again] = await store.apply([unsaved])
    assert again.status is Status.PENDING and again.state is not None
    assert view(again.state, unsaved) == view(first.state, unsaved)


async def test_a_redelivered_unsaved_transaction_far_behind_its_card_gets_its_vector(
    store: FeatureStore,
) -> None:
    """A batch redelivered after its card moved on by more than the allowed lateness."""
    [first] = await store.apply([txn(1, 0.0)])
    await score(store, txn(2, 7200.0))
    [again] = await store.apply([txn(1, 0.0)])
    assert again.status is Status.PENDING and again.state == first.state


async def test_a_redelivered_unsaved_transaction_that_lost_a_record_is_late_and_counted_once(
    store: FeatureStore,
) -> None:
    await score(store, txn(1, 0.0))
    unsaved = txn(2, HORIZON_SECONDS - 10)  # it sees the first record
    await store.apply([unsaved])
    later = HORIZON_SECONDS + LATENESS + 20  # the first record is stale now: compacted away
    await score(store, *(txn(3 + k, later) for k in range(SLACK + 1)))
    [again] = await store.apply([unsaved])
    assert again.status is Status.LATE and again.newest == T0 + later
    state = await store.peek(txn(9, later))
    assert [r[0] - T0 for r in state.card.records] == [HORIZON_SECONDS - 10] + [later] * (SLACK + 1)


async def test_an_unsaved_transaction_does_not_hold_its_card_history_back(
    store: FeatureStore,
) -> None:
    await store.apply([txn(1, 0.0)])  # never saved (its worker died, its event was lost)
    for day in range(1, 366):
        await score(store, txn(100 + day, 86400.0 * day))
    kept = (await store.peek(txn(9, 366 * 86400.0))).card.records
    assert len(kept) <= 31 + SLACK


async def test_a_transaction_later_than_allowed_changes_nothing(store: FeatureStore) -> None:
    await score(store, txn(1, 10_000.0))
    [ok] = await score(store, txn(2, 10_000.0 - LATENESS))
    [late] = await store.apply([txn(3, 10_000.0 - LATENESS - 1)])
    assert ok.status is Status.NEW
    assert late.status is Status.LATE and late.newest == T0 + 10_000.0
    assert len((await store.peek(txn(9, 20_000.0))).card.records) == 2


async def test_a_transaction_id_belongs_to_the_first_card_it_came_with(
    store: FeatureStore,
) -> None:
    first = Transaction("t1", "c1", "p1", 10.0, 1000.0)
    [applied] = await score(store, first)
    impostor = Transaction("t1", "c2", "p1", 10.0, 1000.0)  # the same id, another card
    unsaved = Transaction("t2", "c1", "p1", 5.0, 1100.0)
    [conflict, pending] = await store.apply([impostor, unsaved])
    assert (conflict.status, conflict.owner, conflict.state) == (Status.CONFLICT, "c1", None)
    [again] = await store.apply([Transaction("t2", "c3", "p2", 5.0, 1100.0)])
    assert (again.status, again.owner) == (Status.CONFLICT, "c1")  # claimed, even unsaved
    assert (await store.apply([first]))[0].status is Status.DONE
    assert (await store.peek(Transaction("q", "c2", "p1", 1.0, 2000.0))).card.records == ()
    assert await store.scored("t1") == await store.scored("t1", "c1") == record_for(applied)
    assert pending.status is Status.NEW


async def test_a_fraud_label_counts_once_from_its_first_arrival(store: FeatureStore) -> None:
    [applied] = await score(store, txn(1, 0.0))
    record = record_for(applied)
    await store.record_fraud(record, Label("t1", True, T0 + 100))
    await store.record_fraud(record, Label("t1", True, T0 + 50_000))
    state = await store.peek(txn(2, 86400.0))
    assert state.terminal.frauds == ((T0, T0 + 100),)


async def test_frauds_recorded_together_count_as_one_by_one(store: FeatureStore) -> None:
    applied = [
        a
        for i, (t, term) in enumerate([(0.0, "p1"), (10.0, "p2"), (20.0, "p1")])
        for a in await score(store, txn(i + 1, t, terminal=term))
    ]
    records = [record_for(a) for a in applied]
    labels = [Label(r.txn_id, True, r.event_time + 100) for r in records]
    await store.record_frauds(list(zip(records, labels, strict=True)))
    await store.record_frauds([(records[0], Label("t1", True, T0 + 9_000))])  # counted once
    await store.record_frauds([])
    first = await store.peek(txn(9, 86400.0, terminal="p1"))
    second = await store.peek(txn(9, 86400.0, terminal="p2"))
    assert first.terminal.frauds == ((T0, T0 + 100), (T0 + 20, T0 + 120))
    assert second.terminal.frauds == ((T0 + 10, T0 + 110),)


async def test_peek_writes_nothing(store: FeatureStore) -> None:
    await score(store, txn(1, 0.0))
    before = await store.peek(txn(2, 100_000.0))
    for _ in range(3):
        assert await store.peek(txn(2, 100_000.0)) == before
    [applied] = await store.apply([txn(2, 100_000.0)])
    assert applied.state == before


async def test_peek_many_equals_peek_one_by_one(store: FeatureStore) -> None:
    await score(store, txn(1, 0.0, "c1", "p1"), txn(2, 50.0, "c2", "p1"), txn(3, 90.0, "c1", "p2"))
    probes = [
        txn(4, 100.0, "c1", "p1"),
        txn(5, 3_600.0, "c2", "p2"),
        txn(6, 7.0, "c9", "p9"),
        txn(7, 100.0, "c1", "p1"),
    ]
    assert await store.peek_many(probes) == [await store.peek(p) for p in probes]
    assert await store.peek_many([]) == []


async def test_cards_do_not_see_each_other(store: FeatureStore) -> None:
    await score(store, txn(1, 1.0, "c1", "p1"), txn(2, 2.0, "c2", "p2"))
    assert len((await store.peek(txn(3, 9.0, "c1", "p9"))).card.records) == 1
    assert (await store.peek(txn(3, 9.0, "c3", "p9"))).card.records == ()


async def test_an_unscored_transaction_has_no_record(store: FeatureStore) -> None:
    assert await store.scored("never") is None


@examples(60)
@given(ops=operations(), cut=st.integers(0, 40))
def test_applying_any_prefix_twice_changes_nothing(
    make_store: StoreFactory, ops: list[Op], cut: int
) -> None:
    async def run() -> None:
        once, twice = make_store(), make_store()
        try:
            want = await drive(once, ops)
            await drive(twice, ops[:cut])
            assert await drive(twice, ops) == want
        finally:
            await once.close()
            await twice.close()

    asyncio.run(run())


@examples(100)
@given(ops=operations() | operations_with_unsaved())
def test_redis_and_memory_give_exactly_the_same_vectors(redis_url: str, ops: list[Op]) -> None:
    in_redis, in_memory = asyncio.run(
        in_redis_and_memory(redis_url, lambda store: drive(store, ops))
    )
    assert in_redis == in_memory


@examples(150)
@given(ops=operations_with_unsaved())
def test_unsaved_transactions_and_compaction_keep_every_vector_exact(
    make_store: StoreFactory, ops: list[Op]
) -> None:
    """Transactions left unsaved, saved late, redelivered or abandoned, while their
    cards are compacted: every vector (first and redelivered) equals the brute-force
    reference, and no unsaved transaction keeps its card's stale records alive."""

    async def run() -> None:
        store = make_store()
        try:
            got = await drive(store, ops)
            assert_close(got, reference(ops, [v is None for v in got.redelivered]))
            for card_id in {t.card_id for t in transactions(ops)}:
                newest = (await store.peek(Transaction("?", card_id, "p0", 1.0, T0))).card.newest
                if newest is None:
                    continue
                # the card is rewritten within SLACK + 1 transactions, pending or not
                await score(
                    store,
                    *(
                        Transaction(f"{card_id}-{k}", card_id, "p0", 1.0, newest)
                        for k in range(SLACK + 1)
                    ),
                )
                history = (await store.peek(Transaction("?", card_id, "p0", 1.0, T0))).card
                assert min(history.times) >= newest - 2 * LATENESS - HORIZON_SECONDS
        finally:
            await store.close()

    asyncio.run(run())


@examples(200)
@given(
    steps=st.lists(
        st.sampled_from(
            [
                0.0,
                60.0,
                3600.0,
                7 * 3600.0,
                30 * 3600.0,
                86400.0,
                2 * 86400.0,
                3 * 86400.0,
                7 * 86400.0,
                14 * 86400.0,
                30 * 86400.0,
            ]
        ).flatmap(lambda step: st.sampled_from([step, -step])),
        max_size=30,
    )
)
def test_terminal_windows_equal_the_reference_in_any_order(
    make_store: StoreFactory, steps: list[float]
) -> None:
    """One terminal, a card per transaction, times walking back and forth by up to
    30 days (whole windows and whole kept ranges, so that a late one can land on
    their edges): the bucketed counts equal the brute-force reference's."""

    async def run() -> None:
        store = make_store()
        clock, seen = T0, list[Transaction]()
        try:
            for i, step in enumerate(steps):
                clock += step
                t = Transaction(f"t{i}", f"c{i}", "p", 1.0, clock)
                [applied] = await store.apply([t])
                assert applied.state is not None
                assert terminal.view(applied.state.terminal, t) == terminal_reference(seen, [], t)
                seen.append(t)
        finally:
            await store.close()

    asyncio.run(run())


async def test_terminal_risk_never_reflects_a_label_that_had_not_arrived(
    store: FeatureStore,
) -> None:
    """The label is processed first, but it arrives (event time) after the second transaction."""
    [first] = await score(store, txn(1, 0.0, "c1", "p1"))
    await store.record_fraud(record_for(first), Label("t1", True, T0 + 2 * 86400))
    [before, after] = await score(
        store, txn(2, 86400.0, "c2", "p1"), txn(3, 3 * 86400.0, "c3", "p1")
    )
    assert before.state is not None and after.state is not None
    assert view(before.state, before.txn)["terminal_fraud_count_7d"] == 0.0
    assert view(after.state, after.txn)["terminal_fraud_count_7d"] == 1.0
    assert view(after.state, after.txn)["terminal_fraud_rate_7d"] == 0.5
