"""One contract, every FeatureStore: in-memory and Redis (a real server)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import pytest

from features.card import step, view
from features.events import Transaction
from features.memory import MemoryFeatureStore
from features.redis_store import RedisFeatureStore
from features.store import FeatureStore, ScoredRecord
from tests.support import RealServers


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[FeatureStore]:
    if request.param == "memory":
        yield MemoryFeatureStore()
        return
    servers: RealServers = request.getfixturevalue("real_servers")
    redis_store = RedisFeatureStore.from_url(servers.redis_url, f"fs-{secrets.token_hex(4)}")
    yield redis_store
    await redis_store.close()


def record_for(txn: Transaction, features: dict[str, float]) -> ScoredRecord:
    return ScoredRecord(txn.txn_id, txn.card_id, txn.event_time, features, 0.5, 1)


async def apply(store: FeatureStore, txn: Transaction) -> ScoredRecord:
    state, existing = await store.begin(txn)
    if existing is not None:
        return existing
    record = record_for(txn, view(state, txn))
    await store.commit(txn, step(state, txn), record)
    return record


async def test_an_unknown_card_has_empty_state(store: FeatureStore) -> None:
    state, existing = await store.begin(Transaction("t1", "nobody", "p", 1.0, 0.0))
    assert state.recent == () and existing is None


async def test_commit_stores_state_and_record_together(store: FeatureStore) -> None:
    txn = Transaction("t1", "c1", "p", 5.0, 100.0)
    record = await apply(store, txn)
    assert (await store.card_state("c1")).recent == ((100.0, 5.0),)
    assert await store.scored("t1") == record


async def test_applying_a_transaction_twice_changes_nothing(store: FeatureStore) -> None:
    txns = [Transaction(f"t{i}", "c1", "p", float(i), 100.0 * i) for i in range(1, 5)]
    first = [await apply(store, t) for t in txns]
    state = await store.card_state("c1")
    again = [await apply(store, t) for t in txns]
    assert again == first
    assert await store.card_state("c1") == state


async def test_cards_do_not_see_each_other(store: FeatureStore) -> None:
    await apply(store, Transaction("a", "c1", "p", 1.0, 1.0))
    await apply(store, Transaction("b", "c2", "p", 2.0, 2.0))
    assert (await store.card_state("c1")).recent == ((1.0, 1.0),)
    assert (await store.card_state("c2")).recent == ((2.0, 2.0),)


async def test_an_unscored_transaction_has_no_record(store: FeatureStore) -> None:
    assert await store.scored("never") is None
