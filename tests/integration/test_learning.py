"""The pipeline's learning and dead-letter rules, against a real Redis registry."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
import time
from collections.abc import AsyncIterator, Hashable
from typing import Any, cast

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from features.events import Label, Transaction
from features.memory import MemoryFeatureStore
from features.redis_store import RedisFeatureStore
from features.store import ScoredRecord
from models.errors import JournalMismatchError, SnapshotIntegrityError
from models.factory import build_model
from models.learner import Learner
from models.registry import ModelRegistry
from models.snapshots import SnapshotMeta
from monitoring.metrics import PipelineMetrics
from producers.schema import LabelRecord, TransactionRecord, encode
from stream.runtime.processing import Pipeline
from stream.runtime.records import RawRecord
from stream.settings import ModelSettings, RedisSettings, Settings, WorkerSettings

pytestmark = pytest.mark.integration


@pytest.fixture
async def redis_store(redis_url: str) -> AsyncIterator[RedisFeatureStore]:
    store = RedisFeatureStore.from_url(redis_url, f"fs-{secrets.token_hex(4)}")
    yield store
    await store.close()


@pytest.fixture
def registry(redis_store: RedisFeatureStore) -> ModelRegistry:
    return ModelRegistry(redis_store.client, redis_store.key_prefix, b"test-key")


def raw(topic: str, value: bytes, offset: int = 0) -> RawRecord:
    return RawRecord(topic, 0, offset, b"k", value)


def txn_record(txn: Transaction) -> RawRecord:
    return raw("transactions", encode(TransactionRecord.from_event(txn)))


def label_record(label: Label, offset: int = 0) -> RawRecord:
    return raw("labels", encode(LabelRecord.from_event(label)), offset)


@pytest.fixture
def pipeline(registry: ModelRegistry) -> Pipeline:
    settings = Settings(model=ModelSettings(snapshot_every_labels=3))
    return Pipeline(
        settings, MemoryFeatureStore(), registry, PipelineMetrics.create(CollectorRegistry())
    )


async def test_a_tampered_snapshot_is_refused(registry: ModelRegistry) -> None:
    meta = await registry.publish(
        build_model("logistic_regression"), SnapshotMeta(0, None, "logistic_regression", 1, 0, None)
    )
    key = registry.key(f"snap:{meta.version}")
    await registry.client.hset(key, "blob", b"\x80\x04K\x01.")  # pickle of 1
    with pytest.raises(SnapshotIntegrityError, match="signature does not match"):
        await registry.load(meta.version)
    wrong_key = ModelRegistry(registry.client, registry.key_prefix, b"other-key")
    with pytest.raises(SnapshotIntegrityError):
        await wrong_key.load(meta.version)


async def test_labels_are_learned_from_the_stored_vector_once(pipeline: Pipeline) -> None:
    t = Transaction("t1", "c1", "p1", 10.0, 1000.0)
    await pipeline.on_transaction(txn_record(t))
    stored = await pipeline.store.scored("t1")
    assert stored is not None
    assert await pipeline.on_label(label_record(Label("t1", True, 5000.0))) == []
    assert await pipeline.on_label(label_record(Label("t1", True, 5001.0))) == []
    learner = pipeline.learner
    assert learner is not None and learner.labels_learned == 1
    journal = await pipeline.registry.journal()
    assert [(e.txn_id, e.features) for e in journal] == [("t1", stored.features)]


async def test_a_label_for_an_unknown_transaction_is_dead_lettered(pipeline: Pipeline) -> None:
    out = await pipeline.on_label(label_record(Label("ghost", False, 1.0)))
    assert len(out) == 1 and out[0].topic == "dead-letters"
    letter = json.loads(out[0].value)
    assert letter["reason"] == "unknown_transaction" and "ghost" in letter["detail"]


async def test_a_malformed_transaction_is_dead_lettered_with_field_and_reason(
    pipeline: Pipeline,
) -> None:
    out = await pipeline.on_transaction(raw("transactions", b'{"schema_version": 1}', 42))
    letter = json.loads(out[0].value)
    assert letter["reason"] == "invalid_record" and letter["offset"] == 42
    assert "txn_id: Field required" in letter["detail"]


@pytest.mark.parametrize("moment", ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+01:00"])
async def test_an_event_time_outside_the_datetime_range_is_dead_lettered_not_retried(
    pipeline: Pipeline,
    moment: str,
) -> None:
    """Year 10000 (or 0) in UTC passed the schema, then failed to serialize in the worker,
    which retried its batch for ever: now the record is a dead letter naming the field, and
    the transaction beside it is scored."""
    poison = (
        b'{"schema_version":1,"txn_id":"p","card_id":"poison","terminal_id":"p1",'
        b'"amount":10,"event_time":"' + moment.encode() + b'"}'
    )
    good = txn_record(Transaction("g", "c1", "p1", 5.0, 1_000.0))
    out = await asyncio.wait_for(
        pipeline.on_transactions([raw("transactions", poison, 7), good]), 10
    )
    [letter] = [json.loads(e.value) for e in out if e.topic.endswith("dead-letters")]
    assert letter["reason"] == "invalid_record" and letter["offset"] == 7
    assert letter["detail"].startswith("event_time: ")
    assert await pipeline.store.scored("g") is not None


async def test_a_score_that_cannot_be_published_is_dead_lettered_not_retried(
    pipeline: Pipeline,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Our own bug on one record (here: its score cannot be serialized) dead-letters that
    record as processing_error; the batch is not retried for ever, the others publish."""
    import stream.runtime.scorer as scorer_module

    real = scorer_module.score_value

    def broken(scored: ScoredRecord) -> bytes:
        if scored.txn_id == "bad":
            raise ValueError("year 10000 is out of range")
        return real(scored)

    monkeypatch.setattr(scorer_module, "score_value", broken)
    out = await asyncio.wait_for(
        pipeline.on_transactions(
            [
                txn_record(Transaction("bad", "c1", "p1", 5.0, 1_000.0)),
                txn_record(Transaction("ok", "c2", "p1", 5.0, 1_001.0)),
            ]
        ),
        10,
    )
    [letter] = [json.loads(e.value) for e in out if e.topic.endswith("dead-letters")]
    assert letter["reason"] == "processing_error" and "year 10000" in letter["detail"]
    assert [e.key for e in out if e.topic.endswith("scores")] == [b"c2"]


async def test_a_huge_binary_record_is_dead_lettered_exactly_and_within_the_limit(
    pipeline: Pipeline,
) -> None:
    """400 KB of 0xff became a 2.4 MB dead letter (each byte escaped as U+FFFD), over the
    producer's limit: lost, with the good score beside it (issue 17, item 2). Now its
    start is kept as base64 with its length and SHA-256, within the configured limit."""
    huge = b"\xff" * 400_000
    good = txn_record(Transaction("g2", "c1", "p1", 5.0, 1_000.0))
    out = await pipeline.on_transactions([raw("transactions", huge, 3), good])
    [letter_bytes] = [e.value for e in out if e.topic.endswith("dead-letters")]
    limit = pipeline.settings.worker.dead_letter_value_max_bytes
    assert len(letter_bytes) < 2 * limit
    letter = json.loads(letter_bytes)
    assert (letter["encoding"], letter["truncated"], letter["length"]) == ("base64", True, 400_000)
    assert base64.b64decode(letter["value"]) == huge[:limit]
    assert letter["sha256"] == hashlib.sha256(huge).hexdigest()
    assert [e.key for e in out if e.topic.endswith("scores")] == [b"c1"]
    small = b'\x00\xfe{"not": utf-8}'
    [letter] = [
        json.loads(e.value) for e in await pipeline.on_transactions([raw("transactions", small, 4)])
    ]
    assert base64.b64decode(letter["value"]) == small and "truncated" not in letter


async def test_a_far_future_event_is_refused_and_its_card_goes_on(pipeline: Pipeline) -> None:
    """A transaction dated 2099 made every later transaction of its card too late (issue 17,
    item 6): it is now a dead letter naming event_time, and the card goes on."""
    await pipeline.on_transactions([txn_record(Transaction("n1", "cx", "p1", 5.0, 1_000.0))])
    future = Transaction("f1", "cx", "p1", 5.0, 4_000_000_000.0)  # 2096
    [letter] = [json.loads(e.value) for e in await pipeline.on_transactions([txn_record(future)])]
    assert letter["reason"] == "invalid_record" and letter["detail"].startswith("event_time: ")
    out = await pipeline.on_transactions([txn_record(Transaction("n2", "cx", "p1", 6.0, 1_001.0))])
    assert [e.key for e in out] == [b"cx"] and await pipeline.store.scored("f1") is None


async def test_a_txn_id_seen_again_with_other_content_is_a_conflicting_duplicate(
    pipeline: Pipeline,
) -> None:
    """The same id on another card re-emitted the first score under the second card, or
    was called too late (issue 17, item 7): now a dead letter naming both cards, in a later
    batch or in the same one; an identical redelivery is still a duplicate."""
    first = Transaction("d1", "ca", "p1", 5.0, 1_000.0)
    await pipeline.on_transactions([txn_record(first)])
    again = await pipeline.on_transactions([txn_record(first)])
    assert [e.key for e in again] == [b"ca"]  # a redelivery: its score again
    for batch in (
        [txn_record(Transaction("d1", "cb", "p2", 5.0, 1_000.0))],
        [
            txn_record(Transaction("d2", "ca", "p1", 5.0, 1_001.0)),
            txn_record(Transaction("d2", "cb", "p1", 5.0, 1_001.0)),
        ],
    ):
        out = await pipeline.on_transactions(batch)
        letters = [json.loads(e.value) for e in out if e.topic.endswith("dead-letters")]
        assert [letter["reason"] for letter in letters] == ["conflicting_duplicate"]
        assert "card 'ca'" in letters[0]["detail"] and "card 'cb'" in letters[0]["detail"]
    assert (await pipeline.store.scored("d1") or pytest.fail("lost")).card_id == "ca"


async def test_a_snapshot_is_published_every_n_labels_and_served(pipeline: Pipeline) -> None:
    for i in range(3):
        t = Transaction(f"t{i}", "c1", "p1", 10.0 + i, 1000.0 + i)
        await pipeline.on_transaction(txn_record(t))
        await pipeline.on_label(label_record(Label(t.txn_id, i == 2, 9000.0 + i)))
    meta, _ = await pipeline.registry.load()
    assert meta.labels_learned == 3 and meta.version == 2 and meta.parent == 1
    assert pipeline.holder.require().version == 2
    assert await pipeline.registry.journal() == []


async def scored_then_started(
    registry: ModelRegistry, store: MemoryFeatureStore, txns: list[Transaction], min_seconds: float
) -> tuple[Learner, list[Label]]:
    """``txns`` scored by a pipeline snapshotting every 10 labels (no sooner than
    ``min_seconds`` apart), its learner started, and a label for each (every 4th a fraud)."""
    pipeline = Pipeline(
        Settings(model=ModelSettings(snapshot_every_labels=10, snapshot_min_seconds=min_seconds)),
        store,
        registry,
        PipelineMetrics.create(CollectorRegistry()),
    )
    await pipeline.on_transactions([txn_record(t) for t in txns])
    learner = await pipeline.start()
    assert learner is not None
    return learner, [Label(t.txn_id, i % 4 == 0, 1e4 + i) for i, t in enumerate(txns)]


async def test_labels_learned_in_a_batch_snapshot_where_one_by_one_would(
    registry: ModelRegistry,
    redis_store: RedisFeatureStore,
) -> None:
    store = MemoryFeatureStore()
    txns = [Transaction(f"b{i}", f"c{i % 7}", "p1", 3.0 + i, 100.0 + i) for i in range(25)]
    learner, labels = await scored_then_started(registry, store, txns, 0)
    # a redelivered label within the batch, and one for a transaction never scored
    batch = [*labels[:12], labels[3], Label("nowhere", True, 2e4), *labels[12:]]
    results = await learner.learn_many(batch)
    assert [r.outcome.value for r in results].count("learned") == 25
    assert results[12].outcome.value == "duplicate"
    assert results[13].outcome.value == "unknown_transaction"
    published = [r.published.version for r in results if r.published is not None]
    assert len(published) == 2
    versions = await registry.versions()
    assert [m.labels_learned for m in versions] == [0, 10, 20]
    assert [e.txn_id for e in await registry.journal()] == [t.txn_id for t in txns[20:]]
    # the same model as learning them one at a time
    one_by_one = await Learner.start(
        registry.challenger("single"), store, "logistic_regression", 10
    )
    for label in labels:
        await one_by_one.learn(label)
    vector = dict(results[5].record.features) if results[5].record else {}
    probe = cast("dict[Hashable, Any]", vector)  # River takes dict[Hashable, Any]
    assert learner.model.predict_proba_one(probe) == one_by_one.model.predict_proba_one(probe)
    assert results[0].delay == labels[0].event_time - txns[0].event_time


async def test_a_snapshot_due_by_count_waits_for_its_time_floor(
    registry: ModelRegistry,
) -> None:
    """At thousands of labels a second, a snapshot every 10 labels would be hundreds a
    second: one due by count waits until ``snapshot_min_seconds`` passed since the last,
    and then holds exactly the labels journaled before it."""
    txns = [Transaction(f"f{i}", f"c{i % 5}", "p1", 3.0 + i, 100.0 + i) for i in range(30)]
    learner, labels = await scored_then_started(registry, MemoryFeatureStore(), txns, 0.5)
    first = await learner.learn_many(labels[:25])  # due at 10 (the first), 20 (too soon)
    assert [r.published.version for r in first if r.published is not None] == [2]
    assert [m.labels_learned for m in await registry.versions()] == [0, 10]
    assert len(await registry.journal()) == 15
    await asyncio.sleep(0.5)
    second = await learner.learn_many(labels[25:])  # 20 unpublished, the floor passed
    assert second[-1].published is not None and second[-1].published.version == 3
    assert [m.labels_learned for m in await registry.versions()] == [0, 10, 30]
    assert await registry.journal() == []
    assert learner.unpublished == 0


async def test_a_restarted_learner_resumes_from_snapshot_and_journal(
    registry: ModelRegistry, redis_store: RedisFeatureStore
) -> None:
    store = MemoryFeatureStore()
    settings = Settings(model=ModelSettings(snapshot_every_labels=100))
    first = Pipeline(settings, store, registry, PipelineMetrics.create(CollectorRegistry()))
    for i in range(4):
        t = Transaction(f"t{i}", "c1", "p1", 5.0, 100.0 * i)
        await first.on_transaction(txn_record(t))
        await first.on_label(label_record(Label(t.txn_id, False, 1e5 + i)))
    # the process dies here: 4 labels learned, no snapshot since the first
    resumed = await Learner.start(registry, store, "logistic_regression", 100)
    assert resumed.labels_learned == 4
    assert first.learner is not None
    probe: dict[Hashable, Any] = {"card_txn_count_1h": 2.0, "txn_amount_log": 1.0}
    assert resumed.model.predict_proba_one(probe) == first.learner.model.predict_proba_one(probe)


async def test_a_journal_write_whose_reply_is_lost_is_learned_exactly_once(
    registry: ModelRegistry,
) -> None:
    """Redis applies the journal write, then the connection drops before its reply: the
    retried labels are all duplicates, yet each must be learned, once (issue 17, item 5)."""
    store = MemoryFeatureStore()
    txns = [Transaction(f"m{i}", f"c{i % 3}", "p1", 4.0 + i, 100.0 + i) for i in range(10)]
    labels = [Label(t.txn_id, i % 3 == 0, 1e4 + i) for i, t in enumerate(txns)]
    pipeline = Pipeline(
        Settings(model=ModelSettings(snapshot_every_labels=100)),
        store,
        registry,
        PipelineMetrics.create(CollectorRegistry()),
    )
    await pipeline.on_transactions([txn_record(t) for t in txns])
    learner = await pipeline.start()
    assert learner is not None
    applied = registry._append
    lost: list[object] = []

    async def reply_lost(**kwargs: Any) -> object:
        reply = await applied(**kwargs)
        if not lost:
            lost.append(reply)
            raise ConnectionError("connection closed by server")
        return reply

    registry._append = reply_lost  # type: ignore[assignment]  # its reply lost once
    records = [label_record(label, i) for i, label in enumerate(labels)]
    with pytest.raises(ConnectionError):
        await pipeline.on_labels(records)
    assert learner.labels_learned == 0 and await registry.journal_length() == 10
    await pipeline.on_labels(records)  # the agent's retry of the same batch
    assert learner.labels_learned == 10
    assert [e.txn_id for e in await registry.journal()] == [t.txn_id for t in txns]
    # the model is the one that learned each label once, from its stored vector
    reference = await Learner.start(
        registry.challenger("reference"), store, "logistic_regression", 100
    )
    await reference.learn_many(labels)
    scored = await store.scored("m4") or pytest.fail("not scored")
    probe = cast("dict[Hashable, Any]", dict(scored.features))
    assert learner.model.predict_proba_one(probe) == reference.model.predict_proba_one(probe)
    # a resend of a write that was applied changes nothing; a write from a stale count fails
    entries = await registry.journal()
    await registry.record_learned_many(entries[-2:], 8)
    assert await registry.journal_length() == 10
    with pytest.raises(JournalMismatchError, match="holds 10 entries, not 9"):
        await registry.record_learned_many(entries[-2:-1], 9)
    with pytest.raises(JournalMismatchError, match="holds 10 entries, not 5"):
        await registry.record_learned_many(entries[-1:], 5)


async def test_a_timer_snapshot_racing_the_learner_loses_no_label(pipeline: Pipeline) -> None:
    txns = [Transaction(f"r{i}", f"c{i % 5}", "p1", 10.0 + i, 1000.0 + i) for i in range(60)]
    for t in txns:
        await pipeline.on_transaction(txn_record(t))

    async def timer() -> None:
        for _ in range(200):
            await pipeline.on_timer()
            await asyncio.sleep(0)

    async def learn() -> None:
        for i, t in enumerate(txns):
            await pipeline.on_label(label_record(Label(t.txn_id, i % 7 == 0, 9e4 + i)))

    await asyncio.gather(timer(), learn())
    await pipeline.on_timer()
    meta, _ = await pipeline.registry.load()
    assert meta.labels_learned == len(txns)
    assert await pipeline.registry.journal() == []


async def test_stream_quality_metrics_match_a_direct_computation(registry: ModelRegistry) -> None:
    from models.evaluation import average_precision, roc_auc

    prometheus = CollectorRegistry()
    store = MemoryFeatureStore()
    pipeline = Pipeline(
        Settings(model=ModelSettings(snapshot_every_labels=1000)),
        store,
        registry,
        PipelineMetrics.create(prometheus),
    )
    truth = []
    for i in range(40):
        t = Transaction(f"q{i}", f"c{i % 7}", "p", 5.0 + (80.0 if i % 5 == 0 else i % 3), 1e5 + i)
        await pipeline.on_transaction(txn_record(t))
    for i in range(40):
        is_fraud = i % 5 == 0
        truth.append(is_fraud)
        await pipeline.on_label(label_record(Label(f"q{i}", is_fraud, 3e5 + i * 3600)))
    await pipeline.on_timer()
    scores = [r.score for r in [await store.scored(f"q{i}") for i in range(40)] if r]
    import numpy as np

    assert pipeline.learner is not None
    version = str(pipeline.learner.meta.version)

    def sample(metric: str) -> float | None:
        return prometheus.get_sample_value(
            "fraudstream_model_quality",
            {
                "role": "champion",
                "model": ModelSettings().name,
                "version": version,
                "metric": metric,
                "window": "all",
            },
        )

    assert sample("average_precision") == average_precision(np.array(scores), np.array(truth))
    assert sample("roc_auc") == roc_auc(np.array(scores), np.array(truth))
    assert prometheus.get_sample_value("fraudstream_label_delay_seconds_count") == 40


class GroupProgress:
    """How far the worker's group got through the transactions topic, set by the test
    (the real worker reads it from Kafka: see test_pipeline_end_to_end)."""

    def __init__(self) -> None:
        self.committed: dict[int, int] = {}
        self.ends: dict[int, int] = {0: 0}

    def read(self) -> tuple[dict[int, int], dict[int, int]]:
        return dict(self.committed), dict(self.ends)


def waiting_pipeline(
    registry: ModelRegistry, store: MemoryFeatureStore, progress: GroupProgress
) -> tuple[Pipeline, CollectorRegistry]:
    prometheus = CollectorRegistry()
    settings = Settings(
        model=ModelSettings(snapshot_every_labels=100),
        redis=RedisSettings(key_prefix=registry.key_prefix),
    )  # its own keys
    return Pipeline(
        settings, store, registry, PipelineMetrics.create(prometheus), progress=progress
    ), prometheus


async def test_a_label_that_overtakes_its_transaction_waits_and_is_learned(
    registry: ModelRegistry,
) -> None:
    progress, store = GroupProgress(), MemoryFeatureStore()
    pipeline, prometheus = waiting_pipeline(registry, store, progress)
    early = Transaction("late-txn", "c1", "p1", 42.0, 1000.0)
    assert await pipeline.on_label(label_record(Label(early.txn_id, True, 1000.0))) == []
    assert prometheus.get_sample_value("fraudstream_labels_waiting") == 1.0
    progress.ends = {0: 1}  # the transaction is in Kafka, not yet consumed
    assert await pipeline.on_waiting() == []
    assert pipeline.learner is not None and pipeline.learner.labels_learned == 0

    await pipeline.on_transaction(txn_record(early))  # the stream reaches the label too
    assert await pipeline.on_waiting() == []
    stored = await store.scored(early.txn_id)
    assert stored is not None and pipeline.learner.labels_learned == 1
    journal = await pipeline.registry.journal()
    assert [(e.txn_id, e.is_fraud, e.features) for e in journal] == [
        (early.txn_id, True, stored.features)
    ]
    assert prometheus.get_sample_value("fraudstream_labels_waiting") == 0.0
    assert await registry.client.hlen(f"{registry.key_prefix}:labels:waiting") == 0
    assert (
        prometheus.get_sample_value(
            "fraudstream_dead_letters_total", {"topic": "labels", "reason": "unknown_transaction"}
        )
        == 0.0
    )


async def test_a_waiting_label_is_dead_lettered_once_its_transaction_cannot_come(
    registry: ModelRegistry,
) -> None:
    progress, store = GroupProgress(), MemoryFeatureStore()
    pipeline, prometheus = waiting_pipeline(registry, store, progress)
    assert await pipeline.on_label(label_record(Label("ghost", False, 1.0))) == []
    progress.ends, progress.committed = {0: 5, 1: 3}, {0: 5, 1: 2}
    assert await pipeline.on_waiting() == []  # partition 1 still has a transaction to come
    progress.ends, progress.committed = {0: 9, 1: 9}, {0: 5, 1: 3}  # later ones do not count
    out = await pipeline.on_waiting()
    assert len(out) == 1 and out[0].topic == "dead-letters"
    letter = json.loads(out[0].value)
    assert letter["reason"] == "unknown_transaction" and "ghost" in letter["detail"]
    assert letter["source_topic"] == "labels" and letter["offset"] == 0
    assert await registry.client.hlen(f"{registry.key_prefix}:labels:waiting") == 0
    assert prometheus.get_sample_value("fraudstream_labels_waiting") == 0.0
    assert await pipeline.on_waiting() == []


async def test_waiting_labels_survive_a_restart_of_the_worker(registry: ModelRegistry) -> None:
    progress, store = GroupProgress(), MemoryFeatureStore()
    first, _ = waiting_pipeline(registry, store, progress)
    for i in range(3):
        await first.on_label(label_record(Label(f"w{i}", i == 1, 5000.0 + i), offset=i))
    # the process dies here; the label offsets were committed, the labels are in Redis
    second, prometheus = waiting_pipeline(registry, store, progress)
    progress.ends = {0: 4}  # the group has transactions still to read
    for i in range(3):
        await second.on_transaction(txn_record(Transaction(f"w{i}", "c1", "p1", 9.0, 100.0 + i)))
    assert prometheus.get_sample_value("fraudstream_labels_waiting") == 3.0
    assert await second.on_waiting() == []  # scored, but the stream is not at 5000 yet
    assert second.learner is not None and second.learner.labels_learned == 0
    await second.on_transaction(txn_record(Transaction("later", "c2", "p1", 9.0, 5002.0)))
    assert await second.on_waiting() == []
    assert second.learner is not None and second.learner.labels_learned == 3
    assert sorted(e.txn_id for e in await registry.journal()) == ["w0", "w1", "w2"]
    assert prometheus.get_sample_value("fraudstream_labels_waiting") == 0.0


async def test_the_active_learner_picks_up_labels_another_one_parked_after_it_started(
    registry: ModelRegistry,
) -> None:
    """A learner that lost its lease and had not noticed yet parks labels in Redis; the
    active one, which loaded the waiting labels when it took over, picks them up too."""
    progress, store = GroupProgress(), MemoryFeatureStore()
    active, prometheus = waiting_pipeline(registry, store, progress)
    stale, _ = waiting_pipeline(registry, store, progress)
    await active.on_transaction(txn_record(Transaction("early", "c1", "p1", 9.0, 100.0)))
    assert await active.on_waiting() == []  # started: the hash was empty
    await stale.on_label(label_record(Label("s1", True, 5000.0), offset=7))  # ahead: parked
    progress.ends = {0: 3}
    assert await active.on_waiting() == []
    assert active.waiting is not None and len(active.waiting) == 1  # picked up, waits
    await active.on_transaction(txn_record(Transaction("s1", "c2", "p1", 9.0, 200.0)))
    await active.on_transaction(txn_record(Transaction("late", "c3", "p1", 9.0, 5001.0)))
    assert await active.on_waiting() == []
    assert active.learner is not None and active.learner.labels_learned == 1
    assert prometheus.get_sample_value("fraudstream_labels_waiting") == 0.0


async def test_a_label_is_learned_only_once_the_stream_reaches_its_arrival(
    registry: ModelRegistry,
) -> None:
    """A replay at full speed puts labels into Kafka long before the transactions of
    their arrival day: learning them then would teach the model the future."""
    progress, store = GroupProgress(), MemoryFeatureStore()
    pipeline, prometheus = waiting_pipeline(registry, store, progress)
    progress.ends = {0: 10}  # the ten transactions are in Kafka; the group reads them
    day = 86_400.0
    txns = [Transaction(f"d{i}", f"c{i % 3}", "p1", 10.0 + i, i * day) for i in range(10)]
    await pipeline.on_transactions([txn_record(t) for t in txns[:2]])
    # labels seven days late, all consumed before the stream got past day 1
    for i, txn in enumerate(txns[:3]):
        await pipeline.on_label(
            label_record(Label(txn.txn_id, i == 1, txn.event_time + 7 * day), offset=i)
        )
    assert prometheus.get_sample_value("fraudstream_labels_waiting") == 3.0
    assert pipeline.learner is not None
    learned = []
    for txn in txns[2:]:
        await pipeline.on_transaction(txn_record(txn))
        await pipeline.on_waiting()
        learned.append((txn.event_time / day, pipeline.learner.labels_learned))
    # day 7 reaches d0's label, day 8 d1's, day 9 d2's: never before
    assert learned == [(2, 0), (3, 0), (4, 0), (5, 0), (6, 0), (7, 1), (8, 2), (9, 3)]
    assert [e.txn_id for e in await registry.journal()] == ["d0", "d1", "d2"]
    assert prometheus.get_sample_value("fraudstream_labels_waiting") == 0.0


async def test_labels_past_the_end_of_the_stream_are_learned_once_the_group_caught_up(
    registry: ModelRegistry,
) -> None:
    progress, store = GroupProgress(), MemoryFeatureStore()
    pipeline, _ = waiting_pipeline(registry, store, progress)
    await pipeline.on_transaction(txn_record(Transaction("last", "c1", "p1", 5.0, 100.0)))
    await pipeline.on_label(label_record(Label("last", True, 900.0)))
    progress.ends, progress.committed = {0: 1}, {0: 0}
    assert await pipeline.on_waiting() == []
    assert pipeline.learner is not None and pipeline.learner.labels_learned == 0
    progress.committed = {0: 1}  # nothing older than the label is still to come
    assert await pipeline.on_waiting() == []
    assert pipeline.learner.labels_learned == 1


async def test_the_labels_partitions_are_paused_while_too_many_labels_wait(
    registry: ModelRegistry,
) -> None:
    settings = Settings(
        worker=WorkerSettings(labels_waiting_max=4),
        redis=RedisSettings(key_prefix=registry.key_prefix),
    )
    progress = GroupProgress()
    progress.ends = {0: 9}
    pipeline = Pipeline(
        settings,
        MemoryFeatureStore(),
        registry,
        PipelineMetrics.create(CollectorRegistry()),
        progress=progress,
    )
    assert pipeline.learn is not None and pipeline.waiting is not None
    flow = pipeline.learn.flow

    async def decide() -> tuple[set[int], set[int]]:
        assert pipeline.waiting is not None
        return flow.decide(await pipeline.stream_time(), len(pipeline.waiting))

    await pipeline.on_transactions(
        [txn_record(Transaction(f"p{i}", "c1", "p1", 5.0, float(i))) for i in range(4)]
    )
    decisions = []
    for i in range(4):  # within the lead, but each waits for the stream
        await pipeline.on_label(label_record(Label(f"p{i}", False, 10.0 + i), offset=i))
        decisions.append(await decide())
    assert decisions == [(set(), set())] * 3 + [({0}, set())]
    await pipeline.on_transaction(txn_record(Transaction("q", "c2", "p1", 5.0, 11.0)))
    await pipeline.on_waiting()  # learns two: two still wait, half the limit
    assert len(pipeline.waiting) == 2 and await decide() == (set(), set())
    await pipeline.on_transaction(txn_record(Transaction("r", "c2", "p1", 5.0, 13.0)))
    await pipeline.on_waiting()  # the stream reached the newest label consumed
    assert len(pipeline.waiting) == 0 and await decide() == (set(), {0})
    # a label far ahead of the stream (more than the lead) pauses its partition until
    # the stream reaches it
    await pipeline.on_label(label_record(Label("p3", False, 5_000.0), offset=4))
    assert await decide() == ({0}, set())
    await pipeline.on_transaction(txn_record(Transaction("s", "c2", "p1", 5.0, 4_000.0)))
    assert await decide() == (set(), set())
    await pipeline.on_transaction(txn_record(Transaction("t", "c2", "p1", 5.0, 5_000.0)))
    assert await decide() == (set(), {0})


async def test_a_batch_of_label_records_is_sorted_learned_parked_and_dead_lettered(
    registry: ModelRegistry,
) -> None:
    progress, store = GroupProgress(), MemoryFeatureStore()
    progress.ends = {0: 9}
    pipeline, prometheus = waiting_pipeline(registry, store, progress)
    txns = [Transaction(f"m{i}", f"c{i}", "p1", 5.0 + i, 100.0 + i) for i in range(3)]
    await pipeline.on_transactions([txn_record(t) for t in txns])
    batch = [
        label_record(Label("m0", True, 101.0), offset=0),  # learned
        raw("labels", b'{"txn_id": "m1"}', offset=1),  # invalid: dead-lettered
        label_record(Label("m1", False, 101.5), offset=2),  # learned
        label_record(Label("m0", True, 101.0), offset=3),  # redelivered: once only
        label_record(Label("m2", False, 5000.0), offset=4),  # ahead of the stream: waits
        label_record(Label("later", True, 101.0), offset=5),  # before its transaction: waits
    ]
    out = await pipeline.on_labels(batch)
    assert [json.loads(e.value)["reason"] for e in out] == ["invalid_record"]
    assert pipeline.learner is not None and pipeline.learner.labels_learned == 2
    assert prometheus.get_sample_value("fraudstream_duplicates_total", {"topic": "labels"}) == 1.0
    assert prometheus.get_sample_value("fraudstream_labels_waiting") == 2.0
    assert await registry.client.hlen(f"{registry.key_prefix}:labels:waiting") == 2
    assert prometheus.get_sample_value("fraudstream_events_in_total", {"topic": "labels"}) == 6.0


async def test_a_scorer_waits_for_the_labels_that_came_before_its_transactions(
    registry: ModelRegistry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While labels wait in Kafka, no transaction is scored more than the scoring lead past
    the labels read (the learner's frontier, published in the real Redis); live (no
    frontier) nothing waits, and a frontier that stopped moving (no learner reads the
    labels) does not hold the scorer for ever."""
    settings = Settings(
        worker=WorkerSettings(scoring_lead_seconds=100.0),
        redis=RedisSettings(key_prefix=registry.key_prefix),
    )
    prometheus = CollectorRegistry()
    pipeline = Pipeline(
        settings,
        MemoryFeatureStore(),
        registry,
        PipelineMetrics.create(prometheus),
        progress=GroupProgress(),
    )
    assert pipeline.learn is not None and pipeline.scorer is not None
    learn = pipeline.learn

    def label(txn_id: str, at: float, offset: int, behind: bool) -> RawRecord:
        value = encode(LabelRecord.from_event(Label(txn_id, txn_id == "a", at)))
        return RawRecord("labels", 0, offset, b"k", value, behind)

    await pipeline.on_transaction(txn_record(Transaction("a", "c1", "p1", 5.0, 10.0)))
    await pipeline.on_labels([label("a", 20.0, 0, behind=True)])  # more labels in Kafka
    await learn.publish_frontier(await pipeline.stream_time())
    assert learn.frontier(await pipeline.stream_time()) == 20.0  # read up to 20 s
    scoring = asyncio.create_task(
        pipeline.on_transactions(
            [
                txn_record(Transaction("b", "c1", "p1", 5.0, 100.0)),  # within the lead
                txn_record(Transaction("c", "c2", "p1", 5.0, 200.0)),
            ]
        )
    )  # 180 s past the frontier
    await asyncio.sleep(0.5)
    assert await pipeline.store.scored("b") is not None
    assert await pipeline.store.scored("c") is None and not scoring.done()
    assert prometheus.get_sample_value("fraudstream_scoring_held") == 1
    # the rest of the labels: the last in Kafka, and the label of "a" parked and due
    await pipeline.on_labels([label("b", 150.0, 1, behind=False)])
    await learn.learn_due()
    assert learn.frontier(await pipeline.stream_time()) is None  # nothing left behind
    await learn.publish_frontier(await pipeline.stream_time())
    await asyncio.wait_for(scoring, 5)
    assert await pipeline.store.scored("c") is not None
    assert prometheus.get_sample_value("fraudstream_scoring_held") == 0
    assert prometheus.get_sample_value("fraudstream_scoring_holds_total") == 1
    # a frontier that no longer moves: the scorer goes on after the stall time
    monkeypatch.setattr("stream.runtime.scorer.LABELS_STALL_SECONDS", 0.3)
    await learn.registry.client.set(f"{registry.key_prefix}:labels:frontier", "0")
    began = time.monotonic()
    await asyncio.wait_for(
        pipeline.on_transaction(txn_record(Transaction("d", "c3", "p1", 5.0, 1_000.0))), 5
    )
    assert time.monotonic() - began >= 0.3  # it did wait first
    assert await pipeline.store.scored("d") is not None
    assert prometheus.get_sample_value("fraudstream_scoring_hold_stalls_total") == 1


async def test_a_batch_part_keeps_its_training_rows_across_a_restart(
    registry: ModelRegistry,
) -> None:
    """A hybrid's batch part fits in the background; after each new fit the learner saves
    its training rows (signed) beside the snapshots, which leave them out. A learner
    started again takes them back, counting the journal's labels they already hold once,
    and its next refit learns from all of them."""
    import io
    import random

    from features.vector import EntityState, view
    from models.batch import BatchRetrained
    from models.hybrid import Hybrid
    from models.linear import ScaledLogistic

    rnd = random.Random(7)
    store = MemoryFeatureStore()
    model = Hybrid(
        ScaledLogistic(lr=0.01), BatchRetrained("gradient_boosting", retrain_every=300), 0.5, 0
    )
    await registry.publish(model, SnapshotMeta(0, None, "hybrid", 0, 0, None))
    learner = await Learner.start(registry, store, "hybrid", 100)
    assert isinstance(learner.model, Hybrid)
    part = learner.model.batch
    assert part.background

    async def feed(first: int, count: int) -> None:
        for i in range(first, first + count):
            t = Transaction(f"t{i}", f"c{i % 40}", "p1", rnd.uniform(1, 100), 60.0 * i)
            fraud = t.amount > 80 and rnd.random() < 0.7
            features = dict(view(EntityState(), t))
            record = ScoredRecord(t.txn_id, t.card_id, "p1", t.event_time, features, 0.1, 1)
            await store.save([(None, record)])  # type: ignore[list-item]
            await learner.learn_many([Label(t.txn_id, fraud, t.event_time + 10.0, t.card_id)])

    await feed(0, 300)  # the 300th label starts a fit in the background
    assert part.fits == 0 and part._pending is not None
    while not part._pending[0].done():
        await asyncio.sleep(0.01)
    await feed(300, 150)  # the next label adopts it; the snapshot at 400 saves the rows
    raw = await registry.training_rows()
    assert part.fits == 1 and raw is not None
    with np.load(io.BytesIO(raw)) as saved:  # the rows kept at the snapshot of label 400
        assert saved["rows"].shape == (400, len(part.names or ())) and saved["learned"][0] == 400
    # the process dies at 450 labels: the snapshot (400) has no rows, the journal 50 labels
    again = await Learner.start(registry, store, "hybrid", 100)
    assert isinstance(again.model, Hybrid)
    resumed = again.model.batch
    assert again.labels_learned == 450 and resumed.learned == 450
    assert resumed.held == 450 and np.array_equal(resumed.rows[:400], part.rows[:400])
    assert resumed.fits == 1
    learner = again
    await feed(450, 150)  # at 600 it refits on all 600 rows, none lost, none twice
    while resumed._pending is not None and not resumed._pending[0].done():
        await asyncio.sleep(0.01)
    await feed(600, 1)
    assert resumed.fits == 2 and resumed.fitted_rows == 600
