"""What only the Redis store promises: one round trip, versioned keys, expiry, compactness."""

from __future__ import annotations

import asyncio
import random
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from features import card_bytes
from features.events import Label, Transaction
from features.redis_lua import TERM_SIZE
from features.redis_store import RedisFeatureStore
from features.store import Status
from features.vector import FEATURE_SET_VERSION
from tests.contract.test_feature_store import record_for, score
from tests.feature_cases import T0


class CountingConnection(aioredis.Connection):
    """Counts the writes to the socket: one per round trip."""

    sends = 0

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        type(self).sends += 1
        await super().send_packed_command(command, check_health)


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[RedisFeatureStore]:
    pool = aioredis.ConnectionPool.from_url(redis_url, connection_class=CountingConnection)
    built = RedisFeatureStore(aioredis.Redis(connection_pool=pool), f"fs-{secrets.token_hex(4)}")
    yield built
    await built.close()


def txns(n: int, cards: int = 10) -> list[Transaction]:
    return [
        Transaction(f"t{i}", f"c{i % cards}", f"p{i % 3}", 12.5, T0 + 60.0 * i) for i in range(n)
    ]


async def test_a_batch_is_applied_in_one_round_trip_and_saved_in_one_more(
    store: RedisFeatureStore,
) -> None:
    await store.apply(txns(1))  # loads the scripts once
    CountingConnection.sends = 0
    applied = await store.apply(txns(200)[1:])
    assert CountingConnection.sends == 1
    await store.save([(a, record_for(a)) for a in applied if a.state is not None])
    assert CountingConnection.sends == 2


async def test_keys_carry_the_feature_set_version_and_all_expire(
    store: RedisFeatureStore,
) -> None:
    [applied] = await score(store, txns(1)[0])
    await store.apply([Transaction("u", "c9", "p9", 1.0, T0)])  # left pending ("P")
    await store.record_fraud(record_for(applied), Label("t0", True, T0 + 60))
    await store.record_fraud(record_for(applied), Label("t0", True, T0 + 60))
    keys = [k.decode() async for k in store.client.scan_iter(f"{store.key_prefix}:*")]
    assert keys and all(k.startswith(f"{store.key_prefix}:v{FEATURE_SET_VERSION}:") for k in keys)
    assert {k.split(":")[2] for k in keys} == {"card", "term", "fraud", "scored"}
    for key in keys:
        assert await store.client.ttl(key) > 0, key
    for key, expected in [
        (store.keys.card("c9"), store.card_ttl_seconds),
        (store.keys.term("p0"), store.terminal_ttl_seconds),
    ]:
        ttl = await store.client.ttl(key)
        assert expected - 60 < ttl <= expected
    assert applied.status is Status.NEW


async def test_lost_scripts_are_loaded_again(store: RedisFeatureStore) -> None:
    await score(store, txns(1)[0])
    await store.client.script_flush()
    [again] = await store.apply(txns(1))
    assert again.status is Status.DONE
    probes = [Transaction(f"q{i}", "c0", "p0", 1.0, T0 + 3600 + i) for i in range(3)]
    before = await store.peek_many(probes)
    await store.client.script_flush()  # peeks (the API's reads) load them again too
    assert await store.peek_many(probes) == before and before[0].card.records
    await store.client.script_flush()
    assert await store.peek(probes[0]) == before[0]


async def test_a_card_with_a_year_of_daily_history_keeps_only_what_matters(
    store: RedisFeatureStore,
) -> None:
    year = [Transaction(f"d{i}", "busy", "p", 20.0, T0 + 86400.0 * i) for i in range(365)]
    for day in year:
        await score(store, day)
    raw: Any = await store.client.get(store.keys.card("busy"))
    kept = card_bytes.decode(raw).records
    assert len(kept) <= 31 + 1 + 4  # the horizon, the lateness, and the compaction slack
    assert kept[-1][0] == year[-1].event_time


async def test_the_script_keeps_exactly_the_bytes_of_card_append(
    store: RedisFeatureStore,
) -> None:
    """Out of order, too late, compacted: the card in Redis is card_bytes.append's bytes."""
    rnd = random.Random(3)
    clock, raw = T0, b""
    for i in range(300):
        clock += rnd.choice([0.0, 60.0, 3600.0, 86400.0, 5 * 86400.0])
        t = Transaction(
            f"x{i}",
            "busy",
            f"p{i % 4}",
            rnd.uniform(0, 500),
            clock - rnd.choice([0.0, 0.0, 1800.0, 2 * 3600.0]),
        )
        [applied] = await score(store, t)
        if applied.status is Status.NEW:
            raw = card_bytes.append(raw, t, store.allowed_lateness)
        assert await store.client.get(store.keys.card("busy")) == raw, i
    assert card_bytes.HEADER.unpack_from(raw)[1] > 0  # some records were compacted away


async def test_a_terminal_is_one_fixed_size_string_changed_in_place(
    store: RedisFeatureStore,
) -> None:
    for i, t in enumerate(txns(50, cards=50)):
        await score(store, t)
        raw: Any = await store.client.get(store.keys.term(t.terminal_id))
        assert len(raw) == TERM_SIZE, i
    used = await store.client.memory_usage(store.keys.term("p0"))
    assert used is not None and used <= TERM_SIZE + 100  # no spare capacity kept


async def test_a_new_store_serves_concurrent_first_requests(redis_url: str) -> None:
    """Many requests on a store that has not loaded its scripts yet (a fresh API process
    under load): each waits for the scripts, none meets a half-loaded set."""
    prefix = f"fs-{secrets.token_hex(4)}"
    warm = RedisFeatureStore.from_url(redis_url, prefix)
    fresh = RedisFeatureStore.from_url(redis_url, prefix)
    try:
        await score(warm, *txns(20, cards=5))
        probes = [Transaction(f"q{i}", f"c{i % 5}", "p1", 3.0, T0 + 90_000 + i) for i in range(40)]
        load = fresh.client.script_load

        async def slow_load(script: Any) -> Any:  # a slow Redis: loading takes a while
            sha = await load(script)
            await asyncio.sleep(0.01)
            return sha

        fresh.client.script_load = slow_load  # type: ignore[method-assign]

        async def later(i: int, txn: Transaction) -> Any:  # arriving while scripts load
            await asyncio.sleep(i * 0.002)
            return await fresh.peek(txn)

        seen = await asyncio.gather(*(later(i, t) for i, t in enumerate(probes)))
        assert seen == [await warm.peek(t) for t in probes]
        assert any(state.card.records for state in seen)
    finally:
        await warm.close()
        await fresh.close()
