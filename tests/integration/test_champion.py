"""Champion, challengers of the past, and operators: promote, roll back, retention, audit."""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections.abc import AsyncIterator

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from features.events import Label, Transaction
from features.memory import MemoryFeatureStore
from features.redis_store import RedisFeatureStore
from models.errors import ChampionChangedError
from models.factory import build_model
from models.learner import Learner
from models.registry import ModelRegistry
from models.snapshots import SnapshotMeta
from monitoring.metrics import PipelineMetrics
from producers.schema import TransactionRecord
from stream.runtime.processing import Pipeline
from stream.serving.app import create_app
from stream.settings import ModelSettings, RedisSettings, Settings
from tests.integration.test_learning import label_record, txn_record

pytestmark = pytest.mark.integration
KEY = b"test-key"
AT = "2026-11-22T00:00:00+00:00"


@pytest.fixture
async def registry(redis_url: str) -> AsyncIterator[ModelRegistry]:
    store = RedisFeatureStore.from_url(redis_url, f"fs-{secrets.token_hex(4)}")
    yield ModelRegistry(store.client, store.key_prefix, KEY, keep_versions=5)
    await store.close()


async def publish_chain(registry: ModelRegistry, count: int) -> list[int]:
    versions, parent = [], None
    for i in range(count):
        meta = SnapshotMeta(0, parent, "logistic_regression", 2, i, None)
        parent = (await registry.publish(build_model("logistic_regression"), meta)).version
        versions.append(parent)
    return versions


async def test_retention_keeps_the_newest_versions_and_the_champion(
    registry: ModelRegistry,
) -> None:
    versions = await publish_chain(registry, 3)
    await registry.promote(versions[0], "ops", "keep the first", AT)
    meta = SnapshotMeta(0, versions[0], "logistic_regression", 2, 0, None)
    parent = (await registry.publish(build_model("logistic_regression"), meta)).version
    for _ in range(8):
        meta = SnapshotMeta(0, parent, "logistic_regression", 2, 0, None)
        parent = (await registry.publish(build_model("logistic_regression"), meta)).version
    kept = [m.version for m in await registry.versions()]
    assert len(kept) == 5 and kept[-1] == parent == await registry.champion_version()


async def test_promote_and_rollback_move_the_champion_and_are_audited(
    registry: ModelRegistry,
) -> None:
    first, second = await publish_chain(registry, 2)
    assert await registry.champion_version() == second
    await registry.promote(first, "alice", "second one misbehaves", AT)
    assert await registry.champion_version() == first
    entry = await registry.rollback("bob", "false alarm", AT)
    assert (entry.action, entry.from_version, entry.to_version) == ("rollback", first, second)
    assert [(e.who, e.why) for e in await registry.audit()] == [
        ("alice", "second one misbehaves"),
        ("bob", "false alarm"),
    ]


async def test_concurrent_promotes_and_rollbacks_leave_an_audit_chain_that_links(
    registry: ModelRegistry,
) -> None:
    """60 operators at once: each audit entry starts from the champion the one before left
    (issue 17, item 10: 40 of 59 entries had a wrong ``from_version``)."""
    registry = ModelRegistry(registry.client, registry.key_prefix, KEY, keep_versions=100)
    versions = await publish_chain(registry, 4)
    learner = Learner(
        build_model("logistic_regression"),
        (await registry.load())[0],
        registry,
        MemoryFeatureStore(),
    )
    await registry.promote(versions[0], "ops", "start", AT)

    async def change(i: int) -> None:
        if i % 3 == 0:
            await registry.rollback(f"op{i}", "back", AT)
        elif i % 3 == 1:
            await registry.promote(versions[i % 4], f"op{i}", "promote", AT)
        else:  # a challenger adopted: a new version, audited in its publish
            await registry.adopt(registry.challenger("shadow"), f"op{i}", "adopt", AT)

    shadow = registry.challenger("shadow")
    await shadow.publish(
        build_model("logistic_regression"), SnapshotMeta(0, None, "logistic_regression", 2, 0, None)
    )
    await asyncio.gather(*(change(i) for i in range(60)))
    audit = await registry.audit()
    assert len(audit) == 61
    broken = [(a, b) for a, b in itertools.pairwise(audit) if b.from_version != a.to_version]
    assert broken == []
    assert audit[-1].to_version == await registry.champion_version()
    assert await learner.follow_champion()


async def test_a_stale_learner_cannot_publish_over_a_promotion(registry: ModelRegistry) -> None:
    first, second = await publish_chain(registry, 2)
    await registry.promote(first, "ops", "roll back", AT)
    meta = SnapshotMeta(0, second, "logistic_regression", 2, 9, None)
    with pytest.raises(ChampionChangedError):
        await registry.publish(build_model("logistic_regression"), meta)
    assert await registry.champion_version() == first


async def test_the_learner_and_the_stream_follow_a_promotion(registry: ModelRegistry) -> None:
    settings = Settings(model=ModelSettings(snapshot_every_labels=2, snapshot_min_seconds=0))
    pipeline = Pipeline(
        settings, MemoryFeatureStore(), registry, PipelineMetrics.create(CollectorRegistry())
    )
    for i in range(6):
        t = Transaction(f"t{i}", "c", "p", 10.0 + i, 1e5 + i)
        await pipeline.on_transaction(txn_record(t))
        await pipeline.on_label(label_record(Label(t.txn_id, i % 2 == 0, 2e5 + i)))
    versions = [m.version for m in await registry.versions()]
    assert len(versions) >= 3 and pipeline.holder.require().version == versions[-1]
    await registry.promote(versions[0], "ops", "back to the start", AT)
    await pipeline.on_timer()
    assert pipeline.holder.require().version == versions[0]
    learner = pipeline.learner
    assert isinstance(learner, Learner)
    for i in range(6, 8):  # the next snapshot descends from the promoted version
        t = Transaction(f"t{i}", "c", "p", 10.0, 1e5 + i)
        await pipeline.on_transaction(txn_record(t))
        await pipeline.on_label(label_record(Label(t.txn_id, False, 2e5 + i)))
    newest = (await registry.versions())[-1]
    assert newest.parent == versions[0] and await registry.champion_version() == newest.version


async def test_a_forged_champion_is_refused_once_and_replaced_by_the_next_snapshot(
    registry: ModelRegistry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Someone flips a byte of a kept snapshot and makes it champion: the worker keeps
    scoring with its model, reports the refusal once, and its next snapshot (at once, at
    the timer) replaces the forged champion (issue 17, item 4: the timer crashed the
    worker)."""
    metrics_registry = CollectorRegistry()
    settings = Settings(model=ModelSettings(snapshot_every_labels=2, snapshot_min_seconds=0))
    pipeline = Pipeline(
        settings, MemoryFeatureStore(), registry, PipelineMetrics.create(metrics_registry)
    )
    txns = [Transaction(f"f{i}", "c", "p", 10.0 + i, 1e5 + i) for i in range(8)]
    for t in txns[:4]:
        await pipeline.on_transaction(txn_record(t))
        await pipeline.on_label(label_record(Label(t.txn_id, False, 2e5)))
    serving = pipeline.holder.require().version
    first = (await registry.versions())[0].version
    key = registry.key(f"snap:{first}")
    stored = await registry.client.hget(key, "blob")
    assert isinstance(stored, bytes)
    blob = bytearray(stored)
    blob[len(blob) // 2] ^= 0xFF
    await registry.client.hset(key, "blob", bytes(blob))
    await registry.client.set(registry.key("champion"), first)
    # a learner starting now resumes from the newest sound version
    restarted = await Learner.start(registry, pipeline.store, "logistic_regression", 2)
    assert (restarted.meta.version, restarted.refused_champion) == (serving, first)
    assert pipeline.learner is not None
    await pipeline.learner.follow_champion()
    assert metrics_registry.get_sample_value("fraudstream_models_refused") == 1
    caplog.clear()  # refused and logged once, by the follow above: not again
    with caplog.at_level("ERROR"):
        for _ in range(3):
            await pipeline.on_timer()
    assert not [r for r in caplog.records if "refusing the champion" in r.getMessage()]
    champion = await registry.champion_version()
    assert champion is not None and champion > serving
    assert pipeline.holder.require().version == champion
    assert metrics_registry.get_sample_value("fraudstream_models_refused") == 0
    [replaced] = [e for e in await registry.audit() if e.action == "replace refused champion"]
    assert (replaced.from_version, replaced.to_version) == (first, champion)
    assert (await registry.load(champion))[0].parent == serving
    for t in txns[4:]:  # learning goes on from the replacement
        await pipeline.on_transaction(txn_record(t))
        await pipeline.on_label(label_record(Label(t.txn_id, True, 2e5)))
    assert (await registry.load())[0].parent is not None
    assert pipeline.learner.labels_learned == len(txns)


def test_admin_endpoints_need_the_token_and_change_what_the_api_scores_with(
    redis_url: str,
) -> None:
    prefix = f"fs-{secrets.token_hex(4)}"

    async def setup() -> list[int]:
        store = RedisFeatureStore.from_url(redis_url, prefix)
        try:
            return await publish_chain(ModelRegistry(store.client, prefix, KEY), 2)
        finally:
            await store.close()

    first, second = asyncio.run(setup())
    store = RedisFeatureStore.from_url(redis_url, prefix)  # used in the app's loop
    app = create_app(
        store,
        ModelRegistry(store.client, prefix, KEY),
        CollectorRegistry(),
        refresh_seconds=0.1,
        admin_token="s3cret",
    )
    body = TransactionRecord.from_event(Transaction("q", "c", "p", 5.0, 1e5)).model_dump(
        mode="json"
    )
    change = {"version": first, "who": "carol", "reason": "incident 42"}
    with TestClient(app) as client:
        assert client.post("/v1/score", json=body).json()["model_version"] == second
        assert client.post("/v1/admin/promote", json=change).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert client.post("/v1/admin/promote", json=change, headers=wrong).status_code == 403
        ok = {"Authorization": "Bearer s3cret"}
        missing = client.post("/v1/admin/promote", json={**change, "version": 999}, headers=ok)
        assert missing.status_code == 404
        done = client.post("/v1/admin/promote", json=change, headers=ok)
        assert done.status_code == 200 and done.json()["who"] == "carol"
        assert client.post("/v1/score", json=body).json()["model_version"] == first
        back = client.post(
            "/v1/admin/rollback", json={"who": "dan", "reason": "ok now"}, headers=ok
        )
        assert back.json()["to_version"] == second
        assert client.post("/v1/score", json=body).json()["model_version"] == second
        listing = client.get("/v1/models").json()
        assert listing["champion"] == second and len(listing["audit"]) == 2


def test_admin_endpoints_are_disabled_without_a_token(redis_url: str) -> None:
    store = RedisFeatureStore.from_url(redis_url, f"fs-{secrets.token_hex(4)}")
    app = create_app(store, ModelRegistry(store.client, store.key_prefix, KEY), CollectorRegistry())
    with TestClient(app) as client:
        answer = client.post(
            "/v1/admin/rollback",
            json={"who": "x", "reason": "y"},
            headers={"Authorization": "Bearer anything"},
        )
    assert answer.status_code == 503 and "ADMIN_TOKEN" in answer.json()["detail"]


async def test_challengers_score_in_shadow_learn_and_can_be_promoted(
    registry: ModelRegistry,
) -> None:
    prometheus = CollectorRegistry()
    settings = Settings(
        model=ModelSettings(
            snapshot_every_labels=5,
            snapshot_min_seconds=0,
            challengers=("hoeffding_adaptive_tree",),
        )
    )
    store = MemoryFeatureStore()
    pipeline = Pipeline(settings, store, registry, PipelineMetrics.create(prometheus))
    emitted = []
    for i in range(12):
        t = Transaction(f"s{i}", f"c{i % 3}", "p", 10.0 + i, 1e5 + i)
        emitted += await pipeline.on_transaction(txn_record(t))
        await pipeline.on_label(label_record(Label(t.txn_id, i % 4 == 0, 2e5 + i)))
    records = [await store.scored(f"s{i}") for i in range(12)]
    assert all(r is not None and set(r.shadow) == {"hoeffding_adaptive_tree"} for r in records)
    for emit, record in zip(emitted, records, strict=True):  # the caller sees the champion only
        assert record is not None
        assert '"score":' in emit.value.decode() and "shadow" not in emit.value.decode()
    challenger_registry = registry.challenger("hoeffding_adaptive_tree")
    assert (await challenger_registry.versions())[-1].labels_learned >= 10
    await pipeline.on_timer()
    assert (
        prometheus.get_sample_value(
            "fraudstream_model_quality",
            {
                "role": "challenger:hoeffding_adaptive_tree",
                "model": "hoeffding_adaptive_tree",
                "version": str(
                    pipeline.challengers.learners["hoeffding_adaptive_tree"].meta.version
                ),
                "metric": "labels",
                "window": "all",
            },
        )
        == 12
    )
    entry = await registry.adopt(challenger_registry, "erin", "the tree wins", AT)
    await pipeline.on_timer()
    serving = pipeline.holder.require()
    assert serving.version == entry.to_version
    assert type(serving.model).__name__ == "HoeffdingAdaptiveTreeClassifier"
    champion_meta, _ = await registry.load()
    assert champion_meta.model_name == "hoeffding_adaptive_tree"


async def test_concept_drift_starts_a_challenger_on_recent_data_and_promotes_it(
    registry: ModelRegistry,
) -> None:
    from monitoring.drift.base import DriftEvent
    from stream.settings import DriftSettings

    settings = Settings(
        model=ModelSettings(snapshot_every_labels=1000),
        drift=DriftSettings(
            auto_challenger="hoeffding_adaptive_tree",
            auto_recent_labels=8,
            auto_promote_labels=10,
            auto_promote_margin=-1.0,
            auto_promote_alpha=1.0,
        ),
    )  # promote when ready
    store = MemoryFeatureStore()
    pipeline = Pipeline(settings, store, registry, PipelineMetrics.create(CollectorRegistry()))

    async def traffic(first: int, count: int) -> None:
        for i in range(first, first + count):
            t = Transaction(f"a{i}", f"c{i % 4}", "p", 10.0 + i % 7, 1e5 + i)
            await pipeline.on_transaction(txn_record(t))
            await pipeline.on_label(label_record(Label(t.txn_id, i % 3 == 0, 2e5 + i)))

    await traffic(0, 12)
    await pipeline.on_timer()
    assert pipeline.learn is not None
    assert pipeline.learn.auto.active is None  # no drift, no challenger
    await pipeline.learn.auto.on_events([DriftEvent("adwin", "champion", 2.0, 500, 1e5, 2e5)])
    name = "auto-hoeffding_adaptive_tree-1"
    assert pipeline.learn.auto.active == name and name in pipeline.challengers.learners
    await pipeline.on_timer()  # fewer than 10 of its own scores yet: not promoted
    assert name in pipeline.challengers.learners
    await traffic(12, 12)
    await pipeline.on_timer()
    assert name not in pipeline.challengers.learners and pipeline.learn.auto.active is None
    [entry] = [e for e in await registry.audit() if e.who == "auto-response"]
    assert entry.action == f"promote challenger {name}" and "concept drift" in entry.why
    meta, _ = await registry.load()
    assert meta.model_name == "hoeffding_adaptive_tree"


async def test_a_configured_challenger_clearly_ahead_is_promoted_and_served(
    registry: ModelRegistry,
) -> None:
    from stream.settings import DriftSettings

    def settings(auto: bool) -> Settings:
        return Settings(
            redis=RedisSettings(key_prefix=registry.key_prefix),  # the stream time's hash too
            model=ModelSettings(
                snapshot_every_labels=1000, challengers=("hoeffding_adaptive_tree",)
            ),
            drift=DriftSettings(
                auto_promote_challengers=auto,
                auto_promote_labels=10,
                auto_promote_margin=-1.0,
                auto_promote_alpha=1.0,
            ),
        )

    async def traffic(pipeline: Pipeline, first: int, count: int) -> None:
        for i in range(first, first + count):
            t = Transaction(f"k{i}", f"c{i % 4}", "p", 10.0 + i % 7, 1e5 + i)
            await pipeline.on_transaction(txn_record(t))
            await pipeline.on_label(label_record(Label(t.txn_id, i % 3 == 0, 2e5 + i)))

    off = Pipeline(
        settings(False), MemoryFeatureStore(), registry, PipelineMetrics.create(CollectorRegistry())
    )
    await traffic(off, 0, 6)
    await off.on_timer()  # its first snapshot; then pairs from its own shadow scores
    await traffic(off, 6, 12)
    await off.on_timer()
    assert "hoeffding_adaptive_tree" in off.challengers.learners  # the rule is off: kept in shadow
    assert not [e for e in await registry.audit() if e.who == "auto-promote"]

    on = Pipeline(settings(True), off.store, registry, PipelineMetrics.create(CollectorRegistry()))
    await traffic(on, 18, 12)
    await on.on_timer()
    assert "hoeffding_adaptive_tree" not in on.challengers.learners
    [entry] = [e for e in await registry.audit() if e.who == "auto-promote"]
    assert entry.action == "promote challenger hoeffding_adaptive_tree"
    assert "ahead on shadow scores" in entry.why and "paired bootstrap" in entry.why
    adopted, _ = await registry.load()
    assert adopted.stream_time == 1e5 + 29  # the stream time its snapshot was taken at
    await on.on_timer()  # the champion's learner follows the new champion and serves it
    assert type(on.holder.require().model).__name__ == "HoeffdingAdaptiveTreeClassifier"


async def test_drift_references_are_refreshed_on_request(registry: ModelRegistry) -> None:
    from monitoring.drift.config import DriftConfig
    from monitoring.drift_metrics import DriftMetrics
    from monitoring.monitor import DriftMonitor
    from stream.runtime.monitor import drift_refresh_key

    monitor = DriftMonitor(
        DriftConfig(), ["txn_amount_log"], 0.5, DriftMetrics.create(CollectorRegistry())
    )
    refreshed = []
    monitor.refresh_reference = lambda: refreshed.append(True)  # type: ignore[method-assign]
    settings = Settings(redis={"key_prefix": registry.key_prefix})
    pipeline = Pipeline(
        settings,
        MemoryFeatureStore(),
        registry,
        PipelineMetrics.create(CollectorRegistry()),
        monitor,
    )
    await registry.client.set(drift_refresh_key(settings), "2026-11-21T00:00:00")  # stale
    await pipeline.on_transaction(txn_record(Transaction("r1", "c", "p", 1.0, 1e5)))
    await pipeline.on_timer()
    assert refreshed == []  # a request from before the worker started is not repeated
    await registry.client.set(drift_refresh_key(settings), "2026-11-22T00:01:00")
    await pipeline.on_timer()
    await pipeline.on_timer()  # once per request
    assert refreshed == [True]


async def test_a_promoted_batch_model_brings_its_training_rows_along(
    registry: ModelRegistry,
) -> None:
    """A snapshot leaves a batch model's kept rows out; promoting a challenger puts its
    rows in the champion's place in the same transaction, so the champion's learner
    takes them back. A challenger without rows leaves none of the old model's behind."""
    import io

    import numpy as np

    from models.batch import BatchRetrained
    from models.hybrid import Hybrid
    from models.linear import ScaledLogistic

    def model(rows: int) -> Hybrid:
        hybrid = Hybrid(
            ScaledLogistic(), BatchRetrained("gradient_boosting", retrain_every=10_000), 0.5, 0
        )
        for i in range(rows):
            hybrid.learn_one({"a": float(i), "b": float(i % 7)}, i % 9 == 0)
        return hybrid

    await registry.publish(model(50), SnapshotMeta(0, None, "hybrid", 50, 0, None))
    await registry.save_training_rows(model(50).batch.export_rows())
    shadow = registry.challenger("hybrid_b")
    challenger = model(120)
    await shadow.publish(challenger, SnapshotMeta(0, None, "hybrid", 120, 0, None))
    await shadow.save_training_rows(challenger.batch.export_rows())

    entry = await registry.adopt(shadow, "erin", "it wins", AT)
    raw = await registry.training_rows()
    assert raw is not None
    with np.load(io.BytesIO(raw)) as saved:
        assert saved["rows"].shape == (120, 2) and saved["learned"][0] == 120
    learner = await Learner.start(registry, MemoryFeatureStore(), "hybrid", 100)
    assert learner.meta.version == entry.to_version and isinstance(learner.model, Hybrid)
    assert learner.model.batch.held == 120 and learner.model.batch.learned == 120

    plain = registry.challenger("plain")
    await plain.publish(
        build_model("logistic_regression"), SnapshotMeta(0, None, "logistic_regression", 0, 0, None)
    )
    await registry.adopt(plain, "erin", "rows of no use to it", AT)
    assert await registry.training_rows() is None


async def test_training_rows_are_kept_in_parts_and_replaced_whole(
    registry: ModelRegistry,
) -> None:
    """Rows of 2.5 MB are written in three parts to a staging hash renamed over the kept
    one: they read back to the byte, nothing staged is left and the kept hash has no
    expiry; smaller rows saved next leave none of the old parts. A missing part or a
    changed byte makes them unusable, not wrong; rows kept whole by an older version are
    still read."""
    import tempfile

    from models.rows_store import PART_BYTES, rows_fields

    client, key = registry.client, registry.key("training")
    big = secrets.token_bytes(2 * PART_BYTES + PART_BYTES // 2)
    await registry.save_training_rows(big)
    assert await registry.training_rows() == big
    assert await client.hget(key, "parts") == b"3" and await client.ttl(key) == -1
    assert [k async for k in client.scan_iter(match=registry.key("training:new:*"))] == []

    with tempfile.TemporaryFile() as file:  # a file is read from its start, a part at a time
        file.write(big[::-1])
        await registry.save_training_rows(file)
    assert await registry.training_rows() == big[::-1]

    await registry.save_training_rows(memoryview(b"small rows"))
    assert await registry.training_rows() == b"small rows"
    assert sorted(await client.hkeys(key)) == [b"blob:0", b"parts", b"sig"]

    await registry.save_training_rows(big)
    await client.hdel(key, "blob:1")
    assert await registry.training_rows() is None
    await registry.save_training_rows(big)
    await client.hset(key, "blob:2", b"x" + big[2 * PART_BYTES + 1 :])
    assert await registry.training_rows() is None

    whole = rows_fields(KEY, b"rows kept whole")
    await client.delete(key)
    await client.hset(key, mapping={"blob": b"rows kept whole", "sig": whole["sig"]})
    assert await registry.training_rows() == b"rows kept whole"

    await registry.save_training_rows(big)  # a promoted challenger's rows replace them all
    lr = SnapshotMeta(0, None, "logistic_regression", 0, 0, None)
    await registry.publish(build_model("logistic_regression"), lr)
    shadow = registry.challenger("rows")
    await shadow.publish(build_model("logistic_regression"), lr)
    await shadow.save_training_rows(b"the challenger's rows")
    await registry.adopt(shadow, "erin", "its rows", AT)
    assert await registry.training_rows() == b"the challenger's rows"
    assert sorted(await client.hkeys(key)) == [b"blob:0", b"parts", b"sig"]
