"""The API's decision log on the real Kafka: every answer on the predictions topic as it was
given; with Kafka away, answers go on and what the buffer cannot hold is counted."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from kafka import KafkaConsumer
from prometheus_client import CollectorRegistry

from features.events import Transaction
from features.redis_store import RedisFeatureStore
from models.registry import ModelRegistry
from producers.schema import TransactionRecord
from stream.runtime.topics import ensure_topics
from stream.services.process import free_port
from stream.serving.app import create_app
from stream.serving.decisions import Decision, DecisionLog
from stream.settings import KafkaSettings, Settings, TopicSettings
from tests.support import publish_trained_champion, wait_for

pytestmark = pytest.mark.integration
KEY = b"decision-key"


def _probes(n: int) -> list[dict[str, Any]]:
    return [
        TransactionRecord.from_event(
            Transaction(f"q{i}", f"c{i % 5}", f"p{i % 4}", 3.0 * i + 1, 1e5 + 20_000 + i)
        ).model_dump(mode="json")
        for i in range(n)
    ]


def _app(url: str, prefix: str, log: DecisionLog, metrics: CollectorRegistry) -> Any:
    store = RedisFeatureStore.from_url(url, prefix)
    return create_app(store, ModelRegistry(store.client, prefix, KEY), metrics, decisions=log)


def test_every_answer_is_on_the_predictions_topic_as_given(
    kafka_bootstrap: str, redis_url: str
) -> None:
    tag = secrets.token_hex(4)
    prefix = f"fs-{tag}"
    settings = Settings(
        kafka=KafkaSettings(bootstrap_servers=kafka_bootstrap, partitions=2),
        topics=TopicSettings(prefix=f"d{tag}-"),
    )
    topic = settings.topics.name("predictions")
    publish_trained_champion(redis_url, prefix, KEY)
    metrics = CollectorRegistry()
    log = DecisionLog(
        kafka_bootstrap,
        topic,
        buffer_max=1_000,
        linger_ms=5,
        prepare=lambda: asyncio.to_thread(ensure_topics, settings),
    )
    probes = _probes(12)
    with TestClient(_app(redis_url, prefix, log, metrics)) as client:
        answers = [client.post("/v1/score", json=p).json() for p in probes[:8]]
        batch = client.post(
            "/v1/score/batch", json={"transactions": probes[8:]}, params={"explain": "true"}
        ).json()["results"]
        answers += batch
        wait_for(
            lambda: metrics.get_sample_value("fraudstream_api_decisions_sent_total") == 12,
            30,
            "the decisions acknowledged",
        )
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5_000,
    )
    try:
        logged = {d["txn_id"]: d for d in (json.loads(m.value) for m in consumer)}
    finally:
        consumer.close()
    assert sorted(logged) == sorted(a["txn_id"] for a in answers)
    for probe, answer in zip(probes, answers, strict=True):
        decision = logged[answer["txn_id"]]
        assert decision["card_id"] == probe["card_id"]
        assert decision["terminal_id"] == probe["terminal_id"]
        assert decision["score"] == answer["score"]
        assert decision["model_version"] == answer["model_version"] == 1
        assert decision["feature_set_version"] == answer["feature_set_version"]
        assert 0 < decision["latency_ms"] < 30_000
        assert abs(decision["decided_at"] - time.time()) < 120
        if "reasons" in answer:
            assert decision["reasons"] == [
                [r["feature"], r["value"], r["contribution"]] for r in answer["reasons"]
            ]
        else:
            assert decision["reasons"] is None
    assert any(d["reasons"] for d in logged.values())
    assert metrics.get_sample_value("fraudstream_api_decisions_dropped_total") == 0


def test_with_kafka_away_answers_go_on_and_the_overflow_is_counted(
    redis_url: str,
) -> None:
    prefix = f"fs-{secrets.token_hex(4)}"
    publish_trained_champion(redis_url, prefix, KEY)
    metrics = CollectorRegistry()
    nowhere = f"127.0.0.1:{free_port()}"  # nothing listens there
    log = DecisionLog(
        nowhere, "predictions", buffer_max=5, producer_options={"request_timeout_ms": 1_000}
    )
    with TestClient(_app(redis_url, prefix, log, metrics)) as client:
        answers = [client.post("/v1/score", json=p) for p in _probes(12)]
        assert [a.status_code for a in answers] == [200] * 12
        assert metrics.get_sample_value("fraudstream_api_decisions_buffered") == 5
        assert metrics.get_sample_value("fraudstream_api_decisions_dropped_total") == 7
        assert metrics.get_sample_value("fraudstream_api_decisions_sent_total") == 0
    # stopped with Kafka still away: the 5 kept could not be sent either, and say so
    assert metrics.get_sample_value("fraudstream_api_decisions_dropped_total") == 12


async def test_a_batch_lingers_to_fill_and_every_decision_arrives(kafka_bootstrap: str) -> None:
    """Decisions that come within the linger go to Kafka as one batch (Kafka's cost is per
    request: sent as each came, the log took 60-80 us of the API's CPU per answer), and all
    of them reach the topic."""
    tag = secrets.token_hex(4)
    settings = Settings(
        kafka=KafkaSettings(bootstrap_servers=kafka_bootstrap, partitions=1),
        topics=TopicSettings(prefix=f"l{tag}-"),
    )
    topic = settings.topics.name("predictions")
    ensure_topics(settings)
    batches: list[int] = []
    log = DecisionLog(kafka_bootstrap, topic, linger_ms=1000, on_sent=batches.append)

    def decision(i: int) -> Decision:
        return Decision(f"l{i}", f"c{i % 3}", "p", 0.5, 1, 2, None, 1.0, 1.7e9)

    async def until(done: Any, what: str) -> None:
        deadline = time.monotonic() + 30
        while not done():
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {what}")
            await asyncio.sleep(0.01)

    runner = asyncio.create_task(log.run())
    try:
        log.record(decision(0))  # connects, then sends it after the linger
        await until(lambda: batches, "the first decision sent")
        for i in range(1, 21):  # 20 more within the next linger
            log.record(decision(i))
            await asyncio.sleep(0.005)
        await until(lambda: sum(batches) == 21, "every decision sent")
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
    assert batches == [1, 20], batches
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5_000,
    )
    got = sorted(json.loads(m.value)["txn_id"] for m in consumer)
    consumer.close()
    assert got == sorted(f"l{i}" for i in range(21))
