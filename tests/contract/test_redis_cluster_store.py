"""The Redis Cluster store's own promise, on a real 3-master cluster: a transaction's card and
terminal are updated in their own slots, yet it is counted once and keeps its vector
whenever the process dies (before, between or after the two steps, or before its save),
and its fallback path (redis-py's cluster pipeline) answers as its fast path does."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import pytest

from features.card import HORIZON_SECONDS
from features.card_bytes import SLACK
from features.events import Transaction
from features.memory import MemoryFeatureStore
from features.redis_cluster_store import APPLIED_GRACE_SECONDS, RedisClusterFeatureStore
from features.store import FeatureStore, Status
from features.vector import view
from tests.contract.test_feature_store import record_for, score
from tests.feature_cases import LATENESS, T0

HISTORY = [
    Transaction(f"h{i}", f"c{i % 3}", f"p{i % 2}", 10.0 + i, T0 + 600.0 * i) for i in range(12)
]
LATER = T0 + 86400.0


@pytest.fixture
async def stores(
    redis_cluster_url: str,
) -> AsyncIterator[tuple[RedisClusterFeatureStore, MemoryFeatureStore]]:
    cluster = RedisClusterFeatureStore.from_url(
        redis_cluster_url, f"fs-{secrets.token_hex(4)}", allowed_lateness=LATENESS
    )
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


async def test_a_card_that_dropped_what_a_crashed_transaction_saw_still_counts_it_once(
    stores: tuple[RedisClusterFeatureStore, MemoryFeatureStore],
) -> None:
    """Counted at its card, then the process died; its card compacted away a record it
    could see: redelivered, it is answered late, and its terminal still counts it once."""
    cluster, memory = stores
    start = HISTORY[-1].event_time + 60
    first = Transaction("l1", "lone", "p1", 5.0, start)
    await score(cluster, first)
    await score(memory, first)
    unsaved = Transaction("l2", "lone", "p1", 6.0, start + HORIZON_SECONDS - 10)
    await cluster.card_side([unsaved])  # the process dies before the terminal step
    await memory.apply([unsaved])
    later = start + HORIZON_SECONDS + 3600 + 20  # the first record is compacted away
    for store in (cluster, memory):
        await score(
            store, *(Transaction(f"l{3 + k}", "lone", "p0", 1.0, later) for k in range(SLACK + 1))
        )
    [again] = await cluster.apply([unsaved])
    [want] = await memory.apply([unsaved])
    assert again.status is want.status is Status.LATE
    probe = Transaction("probe", "nobody", "p1", 1.0, unsaved.event_time + 3600)
    assert view(await cluster.peek(probe), probe) == view(await memory.peek(probe), probe)


class _PipelineOnly(RedisClusterFeatureStore):
    """Every command through the fallback (as after a MOVED, a failover, a lost script)."""

    async def _send(self, commands: Callable[[], Sequence[Sequence[object]]]) -> list[Any]:
        await self._ensure_scripts()
        return await self.through_pipeline(commands)


async def test_the_fallback_path_answers_as_the_fast_path(redis_cluster_url: str) -> None:
    fast = RedisClusterFeatureStore.from_url(
        redis_cluster_url, f"fs-{secrets.token_hex(4)}", allowed_lateness=LATENESS
    )
    slow = _PipelineOnly.from_url(
        redis_cluster_url, f"fs-{secrets.token_hex(4)}", allowed_lateness=LATENESS
    )
    try:
        for store in (fast, slow):
            await score(store, *HISTORY)
        txn = Transaction("f1", "c0", "p1", 9.0, HISTORY[-1].event_time + 60)
        impostor = Transaction("f1", "c9", "p1", 9.0, HISTORY[-1].event_time + 60)
        late = Transaction("f2", "c0", "p1", 9.0, HISTORY[0].event_time - 2 * LATENESS)
        answers = []
        for store in (fast, slow):
            [new] = await store.apply([txn])  # redelivered before its save, then a conflict
            [again, conflict, too_late] = await store.apply([txn, impostor, late])
            answers.append([(a.status, a.owner, a.state) for a in (new, again, conflict, too_late)])
            assert [a.status for a in (new, again, conflict, too_late)] == [
                Status.NEW,
                Status.PENDING,
                Status.CONFLICT,
                Status.LATE,
            ]
            assert await store.scored_many(["h3", "h3"], ["c0", None]) == [
                a.record for a in await store.apply([HISTORY[3]] * 2)
            ]
        assert answers[0] == answers[1]
    finally:
        await fast.close()
        await slow.close()
