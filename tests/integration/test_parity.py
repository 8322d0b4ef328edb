"""Stream, replay and API compute the same vectors, on the real stack.

The same events go through Kafka -> Faust worker -> Redis and through the
offline replay (memory store). With one partition and one worker the stream
processes events in the order the replay does, so every vector must be
*exactly* equal. (With several partitions, terminal features depend on how
far each partition has got, and terminal risk on when the learner caught
up; see docs/features.md.) Labels are published between two phases and
waited for, so both paths have applied them before phase B is scored.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from features.events import Label, Transaction
from features.redis_store import RedisFeatureStore
from features.store import ScoredRecord
from models.registry import ModelRegistry
from producers.publisher import Publisher, create_producer
from producers.schema import TransactionRecord
from stream.offline import replay_features
from stream.scorecard.embedded import run_embedded
from stream.scorecard.options import EmbeddedOptions
from stream.settings import Settings
from stream.wiring import build_store
from tests.support import (
    Processes,
    RealServers,
    isolated_settings,
    scored_ids,
    wait_for,
    wait_port,
)

pytestmark = pytest.mark.integration

T0 = 1_767_225_600.0
DAY = 86400.0


def phase(rnd: random.Random, start: float, count: int, first: int) -> list[Transaction]:
    """Transactions over 12 cards and 5 terminals, half located, some out of order."""
    out, clock = [], start
    for i in range(first, first + count):
        clock += rnd.expovariate(1 / 900)
        located = rnd.random() < 0.5
        out.append(
            Transaction(
                f"x{i}",
                f"card{rnd.randrange(12)}",
                f"term{rnd.randrange(5)}",
                round(rnd.lognormvariate(3, 1), 2),
                clock - (rnd.random() * 1800 if rnd.random() < 0.1 else 0.0),
                lat=45 + rnd.random() if located else None,
                lon=5 + rnd.random() if located else None,
            )
        )
    return out


@dataclass
class Parity:
    settings: Settings
    events: list[Transaction | Label]
    stream: dict[str, ScoredRecord | None]
    api_vector: dict[str, float]
    probe: Transaction


def _wait_scores(settings: Settings, want: int) -> None:
    seen = scored_ids(settings, want, timeout_ms=90_000)
    assert len(seen) >= want, f"only {len(seen)} of {want} transactions were scored"


async def _read(settings: Settings, txn_ids: list[str]) -> dict[str, ScoredRecord | None]:
    store = build_store(settings)
    try:
        return {txn_id: await store.scored(txn_id) for txn_id in txn_ids}
    finally:
        await store.close()


async def _labels_learned(settings: Settings) -> int:
    key = settings.model.signing_key
    assert key is not None
    store = RedisFeatureStore.from_url(settings.redis.url, settings.redis.key_prefix)
    try:
        registry = ModelRegistry(
            store.client, settings.redis.key_prefix, key.get_secret_value().encode()
        )
        meta, _ = await registry.load()
        return meta.labels_learned
    finally:
        await store.close()


@pytest.fixture(scope="module")
def parity(real_servers: RealServers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Parity]:
    base = isolated_settings(real_servers, snapshot_every_labels=1000)
    settings = base.model_copy(update={"kafka": base.kafka.model_copy(update={"partitions": 1})})
    rnd = random.Random(11)
    phase_a = phase(rnd, T0, 250, 0)
    too_late = Transaction(
        "x-late",
        phase_a[-1].card_id,
        "term0",
        1.0,
        max(t.event_time for t in phase_a if t.card_id == phase_a[-1].card_id) - 2 * 3600,
    )
    frauds = rnd.sample(phase_a, 20)
    labels = [Label(t.txn_id, True, phase_a[-1].event_time + 60) for t in frauds]
    phase_b = phase(rnd, phase_a[-1].event_time + 3600, 150, 250)
    processes = Processes(tmp_path_factory.mktemp("parity"))
    publisher = Publisher(
        create_producer(settings.kafka.bootstrap_servers),
        settings.topics.name("transactions"),
        settings.topics.name("labels"),
    )
    try:
        processes.start("worker", settings)
        wait_port(settings.worker.metrics_port)
        processes.start("api", settings)
        wait_port(settings.api.port)
        for txn in [*phase_a, too_late]:
            publisher.send(txn)
        publisher.flush()
        _wait_scores(settings, len(phase_a))
        for label in labels:
            publisher.send(label)
        publisher.flush()
        wait_for(
            lambda: asyncio.run(_labels_learned(settings)) == len(labels) or None,
            60,
            "the learner to learn every label",
        )
        for txn in phase_b:
            publisher.send(txn)
        publisher.flush()
        _wait_scores(settings, len(phase_a) + len(phase_b))
        # the API's vector for a new transaction, which then goes through the stream
        probe = Transaction(
            "x-probe",
            phase_b[-1].card_id,
            "term1",
            77.0,
            phase_b[-1].event_time + 30,
            lat=45.5,
            lon=5.5,
        )
        body = TransactionRecord.from_event(probe).model_dump(mode="json")
        response = httpx.post(
            f"http://127.0.0.1:{settings.api.port}/v1/score",
            params={"features": "true"},
            json=body,
            timeout=10,
        )
        assert response.status_code == 200, response.text
        publisher.send(probe)
        publisher.flush()
        _wait_scores(settings, len(phase_a) + len(phase_b) + 1)
        events: list[Transaction | Label] = [*phase_a, too_late, *labels, *phase_b, probe]
        ids = [e.txn_id for e in events if isinstance(e, Transaction)]
        stream = asyncio.run(_read(settings, ids))
        yield Parity(settings, events, stream, response.json()["features"], probe)
    finally:
        publisher.close()
        processes.stop_all()


def test_stream_and_replay_give_exactly_equal_vectors_for_every_transaction(
    parity: Parity,
) -> None:
    replayed = asyncio.run(replay_features(parity.events))
    assert replayed.keys() == parity.stream.keys()
    for txn_id, record in replayed.items():
        streamed = parity.stream[txn_id]
        if record is None:
            assert streamed is None, f"{txn_id} was too late in the replay but scored in the stream"
            continue
        assert streamed is not None, f"{txn_id} has no record in Redis"
        assert streamed.features == record.features, txn_id


def test_the_embedded_scorecard_run_scores_the_stream_vectors_for_every_transaction(
    parity: Parity,
) -> None:
    """``fraudstream scorecard``'s embedded run, on the same events, in the same order."""
    embedded = run_embedded(parity.events, EmbeddedOptions(drift=None, keep_records=True))
    late = {t for t, record in parity.stream.items() if record is None}
    assert embedded.too_late == len(late) == 1
    assert embedded.records.keys() == parity.stream.keys() - late
    for txn_id, record in embedded.records.items():
        streamed = parity.stream[txn_id]
        assert streamed is not None and streamed.features == record.features, txn_id
    assert embedded.learned == 20


def test_the_runs_exercise_lateness_location_and_terminal_risk(parity: Parity) -> None:
    vectors = [r.features for r in parity.stream.values() if r is not None]
    assert parity.stream["x-late"] is None
    assert any(v["terminal_fraud_count_7d"] > 0 for v in vectors)
    assert any(v["card_speed_since_prev_kmh"] > 0 for v in vectors)
    assert sum(v["card_first_seen"] for v in vectors) == 12  # one first transaction per card


def test_the_api_returns_the_vector_the_stream_then_computed(parity: Parity) -> None:
    streamed = parity.stream[parity.probe.txn_id]
    assert streamed is not None
    assert parity.api_vector == streamed.features
