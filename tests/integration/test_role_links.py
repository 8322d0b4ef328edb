"""The links between roles in separate processes, without Kafka in between: what a scorer
and a learner send the monitor, and what the monitor makes of it (real Redis)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import pytest
from prometheus_client import CollectorRegistry

from features.events import Label, Transaction
from features.redis_store import RedisFeatureStore
from models.registry import ModelRegistry
from monitoring.metrics import PipelineMetrics
from stream.runtime.processing import Pipeline
from stream.runtime.records import Emit, RawRecord, decode_learned, decode_scored
from stream.settings import RedisSettings, Settings
from stream.wiring import build_monitor
from tests.integration.test_learning import label_record, txn_record

pytestmark = pytest.mark.integration


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[RedisFeatureStore]:
    redis_store = RedisFeatureStore.from_url(redis_url, f"fs-{secrets.token_hex(4)}")
    yield redis_store
    await redis_store.close()


def role(store: RedisFeatureStore, roles: set[str]) -> tuple[Pipeline, CollectorRegistry]:
    settings = Settings(redis=RedisSettings(key_prefix=store.key_prefix))
    prometheus = CollectorRegistry()
    registry = ModelRegistry(store.client, store.key_prefix, b"k")
    monitor = build_monitor(settings, prometheus) if "monitor" in roles else None
    return Pipeline(
        settings,
        store,
        registry,
        PipelineMetrics.create(prometheus),
        monitor,
        roles=frozenset(roles),
    ), prometheus


def consumed(emits: list[Emit], topic: str) -> list[RawRecord]:
    return [
        RawRecord(e.topic, 0, i, e.key, e.value) for i, e in enumerate(emits) if e.topic == topic
    ]


async def test_a_scorer_and_a_learner_feed_a_monitor_elsewhere_and_it_drops_repeats(
    store: RedisFeatureStore,
) -> None:
    learner, _ = role(store, {"learn"})
    scorer, scorer_metrics = role(store, {"score"})
    monitor, monitor_metrics = role(store, {"monitor"})
    await learner.start()  # publishes the first model, which the scorer follows
    txn = Transaction("t1", "c1", "p1", 12.0, 1_000.0)
    first = await scorer.on_transaction(txn_record(txn))
    again = await scorer.on_transaction(txn_record(txn))  # a redelivery: sent again
    scored = consumed(first + again, scorer.scored_topic)
    assert len(scored) == 2
    record, origin = decode_scored(scored[0].value or b"")
    assert record.txn_id == "t1" and origin.partition == 0
    assert await store.client.hget(f"{store.key_prefix}:stream:time", "0") is None
    await scorer.on_timer()  # the scorer reports how far it got, for the learner
    reported = await store.client.hget(f"{store.key_prefix}:stream:time", "0")
    assert reported is not None
    assert float(reported) == 1_000.0

    label = Label("t1", True, 1_000.0)
    learned = await learner.on_label(label_record(label))
    learned += await learner.on_label(label_record(label))  # learned already: sent again
    links = consumed(learned, learner.learned_topic)
    assert len(links) == 2
    assert decode_learned(links[0].value or b"")[1] == label
    assert learner.learner is not None and learner.learner.labels_learned == 1

    assert await monitor.on_scored(scored) == []
    assert await monitor.on_learned(links) == []
    assert (
        monitor_metrics.get_sample_value("fraudstream_events_in_total", {"topic": "scored"}) == 2.0
    )
    assert (
        monitor_metrics.get_sample_value("fraudstream_duplicates_total", {"topic": "scored"}) == 1.0
    )
    assert (
        monitor_metrics.get_sample_value("fraudstream_duplicates_total", {"topic": "learned"})
        == 1.0
    )
    assert scorer_metrics.get_sample_value("fraudstream_scores_out_total") == 2.0
    bad = await monitor.on_scored([RawRecord("scored", 0, 9, b"k", b"\x01")])
    assert len(bad) == 1 and bad[0].topic == monitor.dead_letter_topic
