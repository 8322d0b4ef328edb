"""Helpers shared by the tests: real-server addresses, polling."""

from __future__ import annotations

import json
import os
import random
import secrets
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from producers.generator import Simulation
    from producers.replay import ReplaySummary

from monitoring.scrape import read_metric as read_metric  # for the tests
from stream.services.cluster import BUS_OFFSET
from stream.services.process import free_port, port_open
from stream.services.servers import write_scrape_target
from stream.settings import (
    ApiSettings,
    KafkaSettings,
    ModelSettings,
    RedisSettings,
    Settings,
    TopicSettings,
    WorkerSettings,
    to_env,
)

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Endpoints:
    """Where the real Kafka and Redis are."""

    kafka: str
    redis_url: str


@dataclass(frozen=True)
class RealServers(Endpoints):
    """Addresses of every real server, and where to register scrape targets."""

    prometheus_url: str
    targets_dir: Path
    origin: str
    alertmanager_url: str | None = None

    def add_scrape_target(self, job: str, name: str, address: str) -> None:
        write_scrape_target(self.targets_dir, job, name, address)

    def query(self, promql: str) -> list[dict[str, Any]]:
        """Run an instant PromQL query against the real Prometheus."""
        url = f"{self.prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=5) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        return list(body["data"]["result"])


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)


def wait_port(port: int, timeout: float = 30.0) -> None:
    wait_for(lambda: port_open("127.0.0.1", port), timeout, f"port {port}")


class Processes:
    """``fraudstream <command>`` run as real child processes with given settings."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        #: Every child ever started, also those a later one of the same name replaced.
        self.started: list[subprocess.Popen[bytes]] = []

    def start(
        self, command: str, settings: Settings, *args: str, name: str | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``fraudstream command *args`` as ``name`` (default: the command); its
        output goes to ``<name>.log``. A name started again replaces the old child."""
        name = name or command
        log = (self.log_dir / f"{name}.log").open("ab")
        env = {**os.environ, **to_env(settings)}
        child = subprocess.Popen(
            [sys.executable, "-m", "stream.cli", command, *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO,
        )
        self.children[name] = child
        self.started.append(child)
        return child

    def log(self, command: str) -> str:
        return (self.log_dir / f"{command}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        for child in self.started:
            if child.poll() is None:
                child.terminate()
        for child in self.started:
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()


def isolated_settings(servers: Endpoints, **model: Any) -> Settings:
    """Settings of one test: own topics, consumer group, Redis keys and ports."""
    tag = secrets.token_hex(4)
    model_settings = {
        "snapshot_every_labels": 50,
        "snapshot_every_seconds": 0.5,
        "signing_key": secrets.token_hex(16),
        **model,
    }
    return Settings(
        kafka=KafkaSettings(bootstrap_servers=servers.kafka, partitions=2),
        topics=TopicSettings(prefix=f"t{tag}-"),
        redis=RedisSettings(url=servers.redis_url, key_prefix=f"fs-{tag}"),
        worker=WorkerSettings(app_id=f"fraudstream-{tag}", metrics_port=free_port()),
        api=ApiSettings(port=free_port(), model_refresh_seconds=0.2),
        model=ModelSettings(**model_settings),
    )


def on_cluster(settings: Settings, cluster_url: str) -> Settings:
    """``settings``, with the Redis Cluster of ``cluster_url`` for their Redis."""
    return settings.model_copy(
        update={"redis": settings.redis.model_copy(update={"url": cluster_url, "cluster": True})}
    )


def replay_into(settings: Settings, simulation: Simulation) -> tuple[ReplaySummary, int]:
    """Every event of ``simulation`` into the settings' topics (made first), at full speed;
    the replay's summary and how many events there were."""
    from producers.events import encode_events
    from producers.replay import Replayer
    from stream.runtime.topics import ensure_topics

    ensure_topics(settings)
    events = encode_events(simulation.transactions, simulation.labels)
    summary = Replayer(
        settings.kafka.bootstrap_servers,
        (settings.topics.name("transactions"), settings.topics.name("labels")),
    ).run(events)
    return summary, events.height


def read_topic(settings: Settings, topic: str) -> list[dict[str, Any]]:
    """Every JSON record on ``topic`` so far (until none came for 5 s)."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka.bootstrap_servers,
        auto_offset_reset="earliest",
        group_id=None,
        consumer_timeout_ms=5_000,
    )
    try:
        return [json.loads(message.value) for message in consumer]
    finally:
        consumer.close()


def drift_events(settings: Settings) -> list[dict[str, Any]]:
    """Every event on the settings' ``drift-events`` topic so far."""
    return read_topic(settings, settings.topics.name("drift_events"))


def replay_paced(settings: Settings, simulation: Simulation, seconds: float) -> threading.Thread:
    """Every event of ``simulation`` into Kafka in event-time order, in about ``seconds``,
    from a background thread (started)."""
    from producers.events import encode_events
    from producers.replay import Replayer
    from stream.runtime.topics import ensure_topics

    ensure_topics(settings)
    events = encode_events(simulation.transactions, simulation.labels)
    times = simulation.transactions["event_time"]
    span = num(times.max()) - num(times.min())
    replayer = Replayer(
        settings.kafka.bootstrap_servers,
        (settings.topics.name("transactions"), settings.topics.name("labels")),
        speed=span / seconds,
    )
    thread = threading.Thread(target=replayer.run, args=(events,), daemon=True)
    thread.start()
    return thread


def scored_ids(settings: Settings, want: int, timeout_ms: int = 10_000) -> set[str]:
    """The transaction ids on the settings' ``scores`` topic, read until ``want`` are seen
    (or nothing more came for ``timeout_ms``)."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        settings.topics.name("scores"),
        bootstrap_servers=settings.kafka.bootstrap_servers,
        auto_offset_reset="earliest",
        group_id=None,
        consumer_timeout_ms=timeout_ms,
    )
    seen: set[str] = set()
    try:
        for message in consumer:
            seen.add(json.loads(message.value)["txn_id"])
            if len(seen) >= want:
                break
    finally:
        consumer.close()
    return seen


def assert_scored_like_the_offline_replay(settings: Settings, simulation: Simulation) -> None:
    """Every transaction the single, ordered offline replay scores is on the scores topic,
    and its stored card features equal the replay's."""
    import asyncio

    from stream.offline import replay_features
    from stream.wiring import build_store

    replayed = asyncio.run(replay_features(simulation.events()))
    want = {t for t, record in replayed.items() if record is not None}
    assert scored_ids(settings, len(want)) >= want

    async def stored() -> list[Any]:
        store = build_store(settings)
        try:
            return await store.scored_many(sorted(want))
        finally:
            await store.close()

    for txn_id, record in zip(sorted(want), asyncio.run(stored()), strict=True):
        expected = replayed[txn_id]
        assert record is not None and expected is not None, txn_id
        card = {k: v for k, v in record.features.items() if not k.startswith("terminal_")}
        assert card == {
            k: v for k, v in expected.features.items() if not k.startswith("terminal_")
        }, txn_id


def assert_state_like_the_offline_replay(settings: Settings, simulation: Simulation) -> None:
    """Each card's and terminal's final state in Redis equals the offline replay's: nothing
    lost, nothing counted twice."""
    import asyncio

    from features.events import Transaction
    from features.memory import MemoryFeatureStore
    from features.vector import view
    from stream.offline import replay_features
    from stream.wiring import build_store

    events = simulation.events()
    memory = MemoryFeatureStore()
    asyncio.run(replay_features(events, store=memory))
    end = max(e.event_time for e in events) + 3600
    last: dict[str, Transaction] = {}
    for event in events:
        if isinstance(event, Transaction):
            last[event.card_id] = event
    probes = [
        Transaction(f"probe-{i}", t.card_id, t.terminal_id, 10.0, end)
        for i, t in enumerate(last.values())
    ]

    async def states() -> list[tuple[dict[str, float], dict[str, float]]]:
        store = build_store(settings)
        try:
            return [(view(await store.peek(p), p), view(await memory.peek(p), p)) for p in probes]
        finally:
            await store.close()

    for probe, (streamed, replayed) in zip(probes, asyncio.run(states()), strict=True):
        assert streamed == replayed, probe.card_id


def assert_every_label_learned_once(settings: Settings, simulation: Simulation) -> None:
    """The champion's count of labels learned (snapshot + journal) is the number of labels,
    and each label's transaction is marked learned."""
    import asyncio

    from stream.wiring import build_registry, build_store

    labels = simulation.labels

    async def check() -> tuple[int, int, int]:
        store = build_store(settings)
        try:
            registry = build_registry(settings, store)
            meta, _ = await registry.load()
            marks = await registry.were_learned(labels["txn_id"].to_list())
            return meta.labels_learned, sum(marks), len(await registry.journal())
        finally:
            await store.close()

    champion, marked, journal = asyncio.run(check())
    assert champion == labels.height  # none lost, none counted twice
    assert marked == labels.height
    assert journal < settings.model.snapshot_every_labels


def labels_learned(settings: Settings) -> int:
    """How many labels the champion's snapshot has learned (0 before there is one)."""
    import asyncio

    from stream.wiring import build_registry, build_store

    async def read() -> int:
        store = build_store(settings)
        try:
            meta, _ = await build_registry(settings, store).load()
            return meta.labels_learned
        except Exception:
            return 0
        finally:
            await store.close()

    return asyncio.run(read())


def publish_trained_champion(
    redis_url: str, prefix: str, key: bytes, txns: list[Any] | None = None
) -> None:
    """Feature state under ``prefix`` from ``txns`` (by default 30 on 4 cards and 3
    terminals) and a champion that learned on it (an amount over 60 is a fraud), so that
    scores differ: what the API tests score against."""
    import asyncio

    from features.events import Transaction
    from features.redis_store import RedisFeatureStore
    from models.calls import learn
    from models.factory import build_model
    from models.registry import ModelRegistry
    from models.scoring import ModelHolder, ServingModel, score_batch
    from models.snapshots import SnapshotMeta

    history = txns or [
        Transaction(f"h{i}", f"c{i % 4}", f"p{i % 3}", 5.0 + 7 * i, 1e5 + 600 * i)
        for i in range(30)
    ]

    async def run() -> None:
        store = RedisFeatureStore.from_url(redis_url, prefix)
        try:
            model = build_model("logistic_regression")
            holder = ModelHolder()
            holder.swap(ServingModel(0, model))
            for result in await score_batch(store, holder, history, {}):
                assert result.record is not None
                learn(model, result.record.features, result.txn.amount > 60)
            await ModelRegistry(store.client, prefix, key).publish(
                model, SnapshotMeta(0, None, "logistic_regression", 2, len(history), None)
            )
        finally:
            await store.close()

    asyncio.run(run())


def wait_api_ready(url: str, timeout: float = 60) -> None:
    """Wait until the API at ``url`` answers ``/readyz`` with 200 (a model loaded)."""
    import httpx

    def ready() -> bool:
        try:
            return httpx.get(f"{url}/readyz", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(ready, timeout, "the API ready")


def free_cluster_base(masters: int) -> int:
    """A first port whose ``masters`` consecutive ports and their bus ports are all free.

    Below the kernel's ephemeral range (32768 and up here), bus ports included: a port
    free when checked there can be taken by any outgoing connection before the node
    binds it (a cluster test failed so in CI, beside the Kafka clients of other tests).
    """
    for _ in range(200):
        base = random.randrange(12_000, 32_000 - BUS_OFFSET - masters)
        ports = [base + i for i in range(masters)] + [base + BUS_OFFSET + i for i in range(masters)]
        if not any(port_open("127.0.0.1", p) for p in ports):
            return base
    raise RuntimeError("no free ports for a cluster")


def num(value: Any) -> float:
    """A polars scalar (``.max()``, ``.item()``: typed as any column type) as a float."""
    return float(value)
