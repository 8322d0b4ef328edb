"""Single-active roles: the lease, its fencing token, and the registry refusing a stale
learner, on the real Redis."""

from __future__ import annotations

import secrets
import signal
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis

from features.events import Label, Transaction
from features.redis_store import RedisFeatureStore
from models.errors import FencedError
from models.factory import build_model
from models.learner import Learner
from models.registry import ModelRegistry
from models.scoring import ModelHolder, ServingModel, score_batch
from models.snapshots import JournalEntry, SnapshotMeta
from stream.runtime.lease import Lease, LeaseKeeper
from stream.services.process import free_port
from tests.support import Processes, RealServers, isolated_settings, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def prefix() -> str:
    return f"fs-{secrets.token_hex(4)}"


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    sync = redis.Redis.from_url(redis_url)
    yield sync
    sync.close()


@pytest.fixture
async def store(redis_url: str, prefix: str) -> AsyncIterator[RedisFeatureStore]:
    redis_store = RedisFeatureStore.from_url(redis_url, prefix)
    yield redis_store
    await redis_store.close()


def test_one_holder_at_a_time_and_each_acquisition_takes_a_higher_token(
    client: redis.Redis, prefix: str
) -> None:
    first = Lease(client, prefix, "learn", "a:1", ttl_seconds=1.0)
    second = Lease(client, prefix, "learn", "b:2", ttl_seconds=1.0)
    fence = first.try_acquire()
    assert fence is not None and fence.token == 1
    assert second.try_acquire() is None
    assert first.current() == "1 a:1"
    assert not second.renew(fence)  # renewing needs the holder's own value
    time.sleep(1.2)  # the holder died: the lease lapses
    taken = second.try_acquire()
    assert taken is not None and taken.token == 2
    assert not first.renew(fence)
    second.release(taken)
    assert second.current() is None


def test_a_standby_waits_for_the_lease_and_takes_it_when_it_is_released(
    client: redis.Redis, prefix: str
) -> None:
    active = Lease(client, prefix, "monitor", "a:1", ttl_seconds=30.0)
    standby = Lease(client, prefix, "monitor", "b:2", ttl_seconds=30.0)
    fence = active.try_acquire()
    assert fence is not None
    got: list[object] = []
    waiter = threading.Thread(target=lambda: got.append(standby.wait(0.05)))
    waiter.start()
    time.sleep(0.3)
    assert not got  # still standing by: the lease is held
    active.release(fence)
    waiter.join(5)
    assert len(got) == 1 and getattr(got[0], "token", None) == fence.token + 1


def test_the_keeper_renews_and_reports_a_takeover(client: redis.Redis, prefix: str) -> None:
    lease = Lease(client, prefix, "learn", "a:1", ttl_seconds=1.0)
    fence = lease.try_acquire()
    assert fence is not None
    lost: list[str] = []
    keeper = LeaseKeeper(lease, fence, lost.append).start()
    time.sleep(2.0)  # twice the time to live: renewed, still ours
    assert lease.current() == f"{fence.token} a:1" and not lost
    client.set(lease.key, "99 thief:9")  # somebody else holds it now
    wait_for(lambda: lost, 3, "the keeper to see its lease taken")
    keeper.stop(release=False)
    assert "taken over" in lost[0]


async def test_a_stale_learner_can_neither_journal_nor_publish(
    client: redis.Redis, store: RedisFeatureStore, prefix: str
) -> None:
    """The old learner was paused past its lease; the new one took over. Every write of
    the old one is refused, and what the new one wrote stays whole."""
    old_lease = Lease(client, prefix, "learn", "old:1", ttl_seconds=0.5)
    old_fence = old_lease.try_acquire()
    assert old_fence is not None
    plain = ModelRegistry(store.client, prefix, b"k")
    old = plain.with_fence(old_fence)
    old_learner = await Learner.start(old, store, "logistic_regression", 1000)
    txn = Transaction("t1", "c1", "p1", 10.0, 1_000.0)
    holder = ModelHolder()
    holder.swap(ServingModel(old_learner.meta.version, old_learner.model))
    await score_batch(store, holder, [txn], {})  # scored by a scorer
    time.sleep(0.6)
    new_fence = Lease(client, prefix, "learn", "new:2", ttl_seconds=5).try_acquire()
    assert new_fence is not None and new_fence.token == old_fence.token + 1
    new = plain.with_fence(new_fence)
    new_learner = await Learner.start(new, store, "logistic_regression", 1000)
    with pytest.raises(FencedError):
        await old.record_learned_many([JournalEntry("t1", True, {"x": 1.0})], 0)
    with pytest.raises(FencedError):
        await old_learner.learn_many([Label("t1", True, 2_000.0)])
    with pytest.raises(FencedError):
        await old.publish(
            build_model("logistic_regression"),
            SnapshotMeta(0, old_learner.meta.version, "logistic_regression", 1, 5, None),
        )
    assert await plain.journal() == [] and await plain.were_learned(["t1"]) == [False]
    [learned] = await new_learner.learn_many([Label("t1", True, 2_000.0)])
    assert learned.outcome.value == "learned"
    published = await new_learner.publish()
    meta, _ = await plain.load()
    assert meta.version == published.version and meta.labels_learned == 1
    # the champion challenger lineages are fenced by the same token
    with pytest.raises(FencedError):
        await old.challenger("arf").publish(
            build_model("logistic_regression"),
            SnapshotMeta(0, None, "logistic_regression", 1, 0, None),
        )


async def test_a_learner_taken_over_while_it_writes_training_rows_leaves_the_kept_ones(
    client: redis.Redis, store: RedisFeatureStore, prefix: str
) -> None:
    """Training rows go to Redis a part at a time; the learner is taken over after the
    second part. Its rename is refused, the rows kept before stay whole and nothing it
    staged is left."""
    import io

    from models.rows_store import PART_BYTES

    old_fence = Lease(client, prefix, "learn", "old:1", ttl_seconds=0.5).try_acquire()
    assert old_fence is not None
    plain = ModelRegistry(store.client, prefix, b"k")
    await plain.save_training_rows(b"the rows kept before")
    taken_over: list[bool] = []

    class TakenOverMidway(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            if self.tell() >= 2 * PART_BYTES and not taken_over:
                time.sleep(0.6)  # the old learner stalls past its lease...
                new = Lease(client, prefix, "learn", "new:2", ttl_seconds=5).try_acquire()
                taken_over.append(new is not None)  # ... and another takes over
            return super().read(size)

    with pytest.raises(FencedError):
        await plain.with_fence(old_fence).save_training_rows(
            TakenOverMidway(secrets.token_bytes(3 * PART_BYTES))
        )
    assert taken_over == [True]
    assert await plain.training_rows() == b"the rows kept before"
    assert [k async for k in store.client.scan_iter(match=plain.key("training:new:*"))] == []


def test_a_standby_worker_stops_at_once_and_cleanly(
    real_servers: RealServers, tmp_path: Path
) -> None:
    """SIGTERM to a worker waiting for the learn lease: it leaves within seconds, status 0
    (it exited 143, killed by the signal, before a handler stood by with it)."""
    settings = isolated_settings(real_servers)
    processes = Processes(tmp_path)
    try:
        processes.start("worker", settings, name="active")
        wait_for(lambda: "took the learn lease" in processes.log("active"), 90, "the lease")
        other = settings.worker.model_copy(update={"metrics_port": free_port()})
        standby = processes.start(
            "worker", settings.model_copy(update={"worker": other}), name="standby"
        )
        wait_for(lambda: "standby for the learn role" in processes.log("standby"), 60, "a standby")
        standby.send_signal(signal.SIGTERM)
        assert standby.wait(timeout=10) == 0, processes.log("standby")
    finally:
        processes.stop_all()
