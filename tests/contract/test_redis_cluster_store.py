"""The Redis Cluster store's own promise, on a real 3-master cluster: a transaction's card and
terminal are updated in their own slots, yet it is counted once and keeps its vector
whenever the process dies (before, between or after the two steps, or before its save)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import pytest

from features.events import Transaction
from features.memory import MemoryFeatureStore
from features.redis_cluster_store import APPLIED_GRACE_SECONDS, RedisClusterFeatureStore
from features.store import FeatureStore, Status
from features.vector import view
from tests.contract.test_feature_store import record_for, score
from tests.feature_cases import LATENESS, T0

HISTORY = [Transaction(f"h{i}", f"c{i % 3}", f"p{i % 2}", 10.0 + i, T0 + 600.0 * i)
           for i in range(12)]
LATER = T0 + 86400.0


@pytest.fixture
async def stores(redis_cluster_url: str
                 ) -> AsyncIterator[tuple[RedisClusterFeatureStore, MemoryFeatureStore]]:
    cluster = RedisClusterFeatureStore.from_url(
        redis_cluster_url, f"fs-{secrets.token_hex(4)}", allowed_lateness=LATENESS)
    memory = MemoryFeatureStore(allowed_lateness=LATENESS)
    for store in (cluster, memory):
        await score(store, *HISTORY)
    yield cluster, memory
    await cluster.close()


async def terminal_counts(store: FeatureStore, terminal_id: str) -> dict[str, float]:
    probe = Transaction("probe", "nobody", terminal_id, 1.0, LATER)
    vector = view(await store.peek(probe), probe)
    return {k: v for k, v in vector.items() if k.startswith("terminal_txn_count")}


async def test_a_crash_between_the_card_and_the_terminal_counts_it_once_there(
    stores: tuple[RedisClusterFeatureStore, MemoryFeatureStore],
) -> None:
    cluster, memory = stores
    txn = Transaction("x1", "c0", "p1", 99.0, HISTORY[-1].event_time + 60)
    [(kind, _)] = await cluster.card_side([txn])  # the process dies here
    assert kind == b"new"
    [want] = await memory.apply([txn])
    for _ in range(3):  # redelivered, again and again, before any save
        [again] = await cluster.apply([txn])
        assert again.status is Status.PENDING
        assert again.state is not None and want.state is not None
        assert view(again.state, txn) == view(want.state, txn)  # as if it never died
    assert await terminal_counts(cluster, "p1") == await terminal_counts(memory, "p1")
    assert (await terminal_counts(cluster, "p1"))["terminal_txn_count_1d"] > 0


async def test_a_crash_after_both_steps_keeps_the_vector_and_counts_once(
    stores: tuple[RedisClusterFeatureStore, MemoryFeatureStore],
) -> None:
    cluster, memory = stores
    txn = Transaction("x2", "c1", "p0", 42.0, HISTORY[-1].event_time + 120)
    [first] = await cluster.apply([txn])  # both steps; the process dies before its save
    [want] = await memory.apply([txn])
    later = Transaction("y2", "c2", "p0", 5.0, txn.event_time + 30)  # the terminal moves on
    await score(cluster, later)
    await score(memory, later)
    [again] = await cluster.apply([txn])
    assert first.status is Status.NEW and again.status is Status.PENDING
    assert first.state is not None and again.state is not None and want.state is not None
    assert view(again.state, txn) == view(first.state, txn) == view(want.state, txn)
    await cluster.save([(again, record_for(again))])
    await memory.save([(want, record_for(want))])
    [done] = await cluster.apply([txn])
    assert done.status is Status.DONE and done.record == record_for(want)
    assert await terminal_counts(cluster, "p0") == await terminal_counts(memory, "p0")


async def test_a_save_leaves_the_terminal_marker_a_short_grace_and_labels_find_the_record(
    stores: tuple[RedisClusterFeatureStore, MemoryFeatureStore],
) -> None:
    cluster, _ = stores
    txn = Transaction("x3", "c2", "p1", 7.0, HISTORY[-1].event_time + 180)
    [applied] = await cluster.apply([txn])
    marker = cluster.keys.applied("p1", "x3")
    assert await cluster.client.ttl(marker) > APPLIED_GRACE_SECONDS  # until saved: kept
    await cluster.save([(applied, record_for(applied))])
    assert 0 < await cluster.client.ttl(marker) <= APPLIED_GRACE_SECONDS
    by_card, by_index = await cluster.scored_many(["x3", "x3"], ["c2", None])
    assert by_card == by_index == record_for(applied)
    assert await cluster.scored("x3", "c0") is None  # not its card: nothing
