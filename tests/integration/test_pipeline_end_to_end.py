"""The thin path, every part real: producer -> Kafka -> Faust worker -> Redis -> River -> scores.

One run per store: a real worker and a real API (child processes) on the
real broker, Redis and Prometheus; once on a single Redis, once on a 3-master
Redis Cluster (``redis.cluster``). Transactions are published, their scores
collected, then their labels published. Each test below checks one claim
against that run.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from kafka import KafkaConsumer

from features.card import SINCE_PREV_CAP_SECONDS
from features.events import Label, Transaction
from features.redis_store import RedisFeatureStore
from features.store import ScoredRecord
from models.registry import ModelRegistry
from models.snapshots import SnapshotMeta
from producers.generator import SimulatorConfig, generate
from producers.population import PopulationConfig
from producers.publisher import Publisher, create_producer
from producers.schema import TransactionRecord
from stream.settings import Settings
from stream.wiring import build_store
from tests.support import (
    Processes,
    RealServers,
    isolated_settings,
    on_cluster,
    wait_for,
    wait_port,
)

pytestmark = pytest.mark.integration
T = TypeVar("T")

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z, before the simulated traffic
KNOWN = [  # one card whose history the test knows by heart
    Transaction("known-1", "card-known", "term-1", 10.0, T0),
    Transaction("known-2", "card-known", "term-2", 20.0, T0 + 600),
    Transaction("known-3", "card-known", "term-1", 30.0, T0 + 7200),
]
TOO_LATE = Transaction("known-late", "card-known", "term-1", 5.0, T0 + 7200 - 3600.5)
BAD_RECORD = (
    b'{"schema_version": 1, "txn_id": "bad-1", "card_id": "c", "terminal_id": "p",'
    b' "amount": -5, "event_time": "2026-01-01T00:00:00Z"}'
)


@dataclass
class Run:
    settings: Settings
    servers: RealServers
    processes: Processes
    simulated: list[Transaction]
    labels: list[Label]
    scores: list[dict[str, object]] = field(default_factory=list)
    dead_letters: list[dict[str, object]] = field(default_factory=list)

    @property
    def transactions(self) -> list[Transaction]:
        return KNOWN + self.simulated

    def card_history(self, card_id: str) -> list[tuple[float, float]]:
        """(time, amount) of each transaction in the card's stored history."""
        probe = Transaction("probe", card_id, "p", 0.0, T0 + 30 * 86400)
        state = asyncio.run(self._with_store(lambda store: store.peek(probe)))
        return [(r[0], r[1] / 100) for r in state.card.records]

    def scored(self, txn_id: str) -> ScoredRecord | None:
        return asyncio.run(self._with_store(lambda store: store.scored(txn_id)))

    def latest_meta(self) -> SnapshotMeta:
        async def load(store: RedisFeatureStore) -> SnapshotMeta:
            key = self.settings.model.signing_key
            assert key is not None
            registry = ModelRegistry(
                store.client, self.settings.redis.key_prefix, key.get_secret_value().encode()
            )
            meta, _ = await registry.load()
            return meta

        return asyncio.run(self._with_store(load))

    async def _with_store(self, use: Callable[[RedisFeatureStore], Awaitable[T]]) -> T:
        store = build_store(self.settings)
        try:
            return await use(store)
        finally:
            await store.close()


def _consume(settings: Settings, topic: str, want: int, timeout: float) -> list[dict[str, object]]:
    consumer = KafkaConsumer(
        settings.topics.name(topic),
        bootstrap_servers=settings.kafka.bootstrap_servers,
        auto_offset_reset="earliest",
        group_id=None,
        consumer_timeout_ms=int(timeout * 1000),
    )
    got: list[dict[str, object]] = []
    try:
        for message in consumer:
            got.append(json.loads(message.value))
            if len(got) >= want:
                break
    finally:
        consumer.close()
    return got


@pytest.fixture(scope="module", params=["redis", "redis-cluster"])
def run(
    real_servers: RealServers,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[Run]:
    settings = isolated_settings(real_servers, snapshot_every_labels=40)
    if request.param == "redis-cluster":
        settings = on_cluster(settings, request.getfixturevalue("redis_cluster_url"))
    processes = Processes(tmp_path_factory.mktemp("e2e"))
    events = generate(
        SimulatorConfig(
            population=PopulationConfig(customers=40, terminals=30),
            days=2,
            start_time=T0 + 86400,
            seed=3,
        )
    ).events()
    simulated = [e for e in events if isinstance(e, Transaction)]
    labels = [e for e in events if isinstance(e, Label)]
    try:
        processes.start("worker", settings)
        wait_port(settings.worker.metrics_port)
        real_servers.add_scrape_target(
            "worker", settings.worker.app_id, f"127.0.0.1:{settings.worker.metrics_port}"
        )
        publisher = Publisher(
            create_producer(settings.kafka.bootstrap_servers),
            settings.topics.name("transactions"),
            settings.topics.name("labels"),
        )
        for txn in [*KNOWN, *KNOWN, TOO_LATE]:  # the known ones twice: a redelivery
            publisher.send(txn)
        for txn in simulated:
            publisher.send(txn)
        publisher.send_raw(settings.topics.name("transactions"), b"c", BAD_RECORD)
        publisher.flush()
        result = Run(settings, real_servers, processes, simulated, labels)
        expected_scores = 2 * len(KNOWN) + len(simulated)
        result.scores = _consume(settings, "scores", expected_scores, timeout=90)
        for label in [*labels, Label("never-scored", True, T0 + 10 * 86400)]:
            publisher.send(label)
        publisher.flush()
        publisher.close()
        result.dead_letters = _consume(settings, "dead_letters", 3, timeout=60)
        processes.start("api", settings)
        wait_port(settings.api.port)
        yield result
    finally:
        processes.stop_all()


def test_every_transaction_gets_a_score_on_the_scores_topic(run: Run) -> None:
    scored_ids = {s["txn_id"] for s in run.scores}
    assert scored_ids == {t.txn_id for t in run.transactions}
    assert all(0.0 <= float(str(s["score"])) <= 1.0 for s in run.scores)


def test_a_redelivered_transaction_is_scored_once_and_counted_once(run: Run) -> None:
    for txn in KNOWN:
        copies = [s for s in run.scores if s["txn_id"] == txn.txn_id]
        assert len(copies) == 2
        assert copies[0] == copies[1]  # same score, same model version
    assert run.card_history("card-known") == [(T0, 10.0), (T0 + 600, 20.0), (T0 + 7200, 30.0)]


def test_redis_holds_the_vector_each_transaction_was_scored_with(run: Run) -> None:
    first, third = run.scored("known-1"), run.scored("known-3")
    assert first is not None and third is not None
    assert first.features["card_first_seen"] == 1.0
    assert first.features["card_seconds_since_prev"] == SINCE_PREV_CAP_SECONDS
    # at T0+2h: the 1h window [T0+1h, T0+2h) is empty; the day holds 10 + 20
    assert third.features["card_txn_count_1h"] == 0.0
    assert third.features["card_txn_count_1d"] == 2.0
    assert third.features["card_amount_sum_1d"] == 30.0
    assert third.features["card_seconds_since_prev"] == 6600.0
    assert third.features["card_first_seen"] == 0.0


def test_bad_records_and_unknown_labels_go_to_the_dead_letter_topic(run: Run) -> None:
    by_reason = {d["reason"]: d for d in run.dead_letters}
    assert set(by_reason) == {"invalid_record", "unknown_transaction", "too_late"}
    assert "allowed lateness of 3600s" in str(by_reason["too_late"]["detail"])
    invalid = by_reason["invalid_record"]
    assert "amount" in str(invalid["detail"]) and invalid["value"] == BAD_RECORD.decode()
    assert "never-scored" in str(by_reason["unknown_transaction"]["detail"])


def test_the_learner_learns_every_label_from_the_stored_vector(run: Run) -> None:
    def learned() -> SnapshotMeta | None:
        meta = run.latest_meta()
        return meta if meta.labels_learned == len(run.labels) else None

    meta = wait_for(learned, 60, f"{len(run.labels)} labels learned")
    assert meta.version > 1 and meta.parent is not None


def test_the_api_scores_with_the_cards_current_features(run: Run) -> None:
    api = f"http://127.0.0.1:{run.settings.api.port}"
    probe = Transaction("probe-1", "card-known", "term-9", 50.0, T0 + 7201)
    body = TransactionRecord.from_event(probe).model_dump(mode="json")
    response = wait_for(
        lambda: _post_ok(f"{api}/v1/score?features=true", body), 30, "the API to score"
    )
    result = response.json()
    assert result["features"]["card_txn_count_1h"] == 1.0  # known-3, one second earlier
    assert result["features"]["card_amount_sum_1h"] == 30.0
    assert result["features"]["card_txn_count_1d"] == 3.0
    assert result["features"]["card_amount_sum_1d"] == 60.0
    assert result["features"]["card_seconds_since_prev"] == 1.0
    assert 0.0 <= result["score"] <= 1.0 and result["model_version"] >= 1
    assert httpx.get(f"{api}/healthz").json()["status"] == "ok"
    bad = httpx.post(f"{api}/v1/score", json={**body, "amount": "lots"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][-1] == "amount"


def _post_ok(url: str, body: dict[str, object]) -> httpx.Response | None:
    try:
        response = httpx.post(url, json=body, timeout=5)
    except httpx.HTTPError:
        return None
    return response if response.status_code == 200 else None


def test_the_real_prometheus_scraped_the_workers_counters(run: Run) -> None:
    job = f'job="fraudstream-worker",instance_name="{run.settings.worker.app_id}"'
    published = 2 * len(KNOWN) + len(run.simulated) + 2  # plus the bad and the late record

    def scraped() -> bool:
        rows = run.servers.query(f'fraudstream_events_in_total{{{job},topic="transactions"}}')
        return bool(rows) and float(rows[0]["value"][1]) == published

    wait_for(scraped, 30, "Prometheus to scrape the worker's transaction counter")
    scores = run.servers.query(f"fraudstream_scores_out_total{{{job}}}")
    assert float(scores[0]["value"][1]) == published - 2
    dead = run.servers.query(f"sum(fraudstream_dead_letters_total{{{job}}})")
    assert float(dead[0]["value"][1]) == 3
    # the event loop's lag is measured all along (a probe every 0.25 s)
    probes = run.servers.query(f"fraudstream_event_loop_lag_seconds_count{{{job}}}")
    assert probes and float(probes[0]["value"][1]) > 0


def test_worker_log_has_no_unexpected_errors(run: Run, tmp_path: Path) -> None:
    log = run.processes.log("worker")
    assert "Traceback" not in log, log[-3000:]
