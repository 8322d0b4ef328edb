"""A replay at full speed through Kafka and a real worker learns no label from the future.

Every event is in Kafka before the worker starts, so its labels topic (cheap
to consume) could run weeks of event time ahead of its transactions topic.
Each snapshot records the stream time it was published at and the arrival
time of the last label it learned: the second may never pass the first.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import polars as pl
import pytest
import redis
import redis.asyncio as aioredis

from models.registry import ModelRegistry
from models.snapshots import SnapshotMeta
from producers.scenario import load_scenario, run_scenario
from stream.wiring import signing_key
from tests.support import (
    Processes,
    RealServers,
    isolated_settings,
    num,
    read_metric,
    replay_into,
    wait_for,
    wait_port,
)

pytestmark = pytest.mark.integration


async def _watch(
    registry: ModelRegistry,
    want: int,
    timeout: float,
    waiting: list[float] | None = None,
    port: int = 0,
) -> list[SnapshotMeta]:
    """Every snapshot seen until one has learned ``want`` labels (retention drops old ones);
    the worker's waiting labels are read into ``waiting`` on the way."""
    seen: dict[int, SnapshotMeta] = {}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if waiting is not None:
            now = await asyncio.to_thread(read_metric, port, "fraudstream_labels_waiting")
            waiting.append(now or 0.0)
        for meta in await registry.versions():
            seen[meta.version] = meta
        if any(m.labels_learned >= want for m in seen.values()):
            return sorted(seen.values(), key=lambda m: m.version)
        await asyncio.sleep(0.2)
    learned = max((m.labels_learned for m in seen.values()), default=0)
    raise AssertionError(f"{learned} of {want} labels learned in {timeout:.0f}s")


def test_a_full_speed_replay_learns_each_label_only_once_the_stream_reached_it(
    real_servers: RealServers,
    tmp_path: Path,
) -> None:
    settings = isolated_settings(
        real_servers, snapshot_every_labels=200, snapshot_every_seconds=0.5, snapshot_min_seconds=0
    )
    # few labels may wait: the worker pauses its labels partitions when they run ahead
    settings = settings.model_copy(
        update={"worker": settings.worker.model_copy(update={"labels_lead_seconds": 3_600.0})}
    )
    simulation, _ = run_scenario(load_scenario("baseline"), days=20, customers=100)
    summary, _ = replay_into(settings, simulation)
    assert summary.failed == 0
    last_transaction = num(simulation.transactions["event_time"].max())

    async def run() -> list[SnapshotMeta]:
        client = aioredis.from_url(settings.redis.url)
        registry = ModelRegistry(client, settings.redis.key_prefix, signing_key(settings))
        try:
            return await _watch(
                registry,
                simulation.labels.height,
                timeout=240,
                waiting=waiting,
                port=settings.worker.metrics_port,
            )
        finally:
            await client.aclose()

    processes = Processes(tmp_path)
    waiting: list[float] = []
    try:
        processes.start("worker", settings)
        wait_port(settings.worker.metrics_port)
        metas = asyncio.run(run())
        pauses = read_metric(settings.worker.metrics_port, "fraudstream_labels_pauses_total")
        holds = read_metric(settings.worker.metrics_port, "fraudstream_scoring_holds_total")
    finally:
        processes.stop_all()
    within = [m for m in metas if m.created_at is not None and m.created_at <= last_transaction]
    assert len(within) >= 5, [(m.version, m.labels_learned) for m in metas]
    for meta in within:
        assert meta.stream_time is not None and meta.created_at is not None
        assert meta.created_at <= meta.stream_time, (
            f"v{meta.version} learned a label that arrived at {meta.created_at:.0f}, "
            f"{(meta.created_at - meta.stream_time) / 86400:.2f} days after the stream "
            f"time {meta.stream_time:.0f}"
        )
    # and the labels after the last transaction were learned too (the group caught up)
    assert metas[-1].labels_learned == simulation.labels.height
    # the flow control engaged: the labels ran ahead and were paused, or the scorer waited
    # for them (it now mostly keeps them in step, so a run may need no pause); beside the
    # labels that came after the last transaction (they wait for the group to commit it),
    # at most the records the consumer had handed over when a partition was paused ever
    # waited: one poll (4 batches), the agent's buffer (8) and the batch in hand
    assert (pauses or 0) + (holds or 0) > 0, (pauses, holds)
    after = simulation.labels.filter(pl.col("event_time") > last_transaction).height
    assert max(waiting) <= after + 13 * settings.worker.batch_max, (max(waiting), after)


def test_a_worker_killed_while_labels_wait_loses_none_and_learns_none_twice(
    real_servers: RealServers,
    tmp_path: Path,
) -> None:
    """kill -9 in the middle of a full-speed replay, labels waiting in Redis for the
    stream; a new worker takes over: every label is learned, exactly once."""
    settings = isolated_settings(
        real_servers, snapshot_every_labels=200, snapshot_every_seconds=0.5, snapshot_min_seconds=0
    )
    # labels may run the whole replay ahead of the stream: they are read and wait in Redis
    settings = settings.model_copy(
        update={"worker": settings.worker.model_copy(update={"labels_lead_seconds": 30 * 86_400.0})}
    )
    simulation, _ = run_scenario(load_scenario("baseline"), days=20, customers=100)
    summary, _ = replay_into(settings, simulation)
    assert summary.failed == 0
    labels = simulation.labels.height

    async def watch(want: int) -> list[SnapshotMeta]:
        client = aioredis.from_url(settings.redis.url)
        registry = ModelRegistry(client, settings.redis.key_prefix, signing_key(settings))
        try:
            return await _watch(registry, want, timeout=240)
        finally:
            await client.aclose()

    processes = Processes(tmp_path)
    try:
        first = processes.start("worker", settings)
        wait_port(settings.worker.metrics_port)
        asyncio.run(watch(1))  # learning has begun ...
        parked = redis.Redis.from_url(settings.redis.url)
        key = f"{settings.redis.key_prefix}:labels:waiting"
        wait_for(lambda: parked.hlen(key) > 0, 60, "labels parked for the stream")
        first.kill()  # ... and labels wait for the stream: SIGKILL, no last commit
        assert parked.hlen(key) > 0
        first.wait(timeout=30)
        processes.start("worker", settings)
        metas = asyncio.run(watch(labels))
    finally:
        processes.stop_all()
    assert metas[-1].labels_learned == labels  # none lost, none counted twice

    async def journal_and_markers() -> tuple[int, int]:
        client = aioredis.from_url(settings.redis.url)
        try:
            registry = ModelRegistry(client, settings.redis.key_prefix, signing_key(settings))
            markers = await registry.were_learned(simulation.labels["txn_id"].to_list())
            return len(await registry.journal()), sum(markers)
        finally:
            await client.aclose()

    journal, marked = asyncio.run(journal_and_markers())
    assert marked == labels and journal <= 200  # each marked learned; the journal is since
    #                                             the last snapshot only
