"""The Faust app: two agents and a timer, each a thin shell over :class:`Pipeline`.

Built by :func:`create_app`; nothing is created at import.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import faust

from stream.processing import Pipeline
from stream.records import Emit, RawRecord
from stream.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds between retries when Redis or the model are not available.
RETRY_BACKOFF = (0.1, 0.5, 1.0, 2.0, 5.0)


def create_app(settings: Settings, pipeline: Pipeline) -> faust.App:
    """A Faust app whose agents score transactions and learn from labels."""
    faust_dir = (settings.services.state_dir / "faust").resolve()
    faust_dir.mkdir(parents=True, exist_ok=True)  # Faust creates only the last level
    app = faust.App(
        settings.worker.app_id,
        broker=f"kafka://{settings.kafka.bootstrap_servers}",
        store="memory://",
        # Faust's own state (none: tables are not used) under the state folder, not the cwd
        datadir=str(faust_dir / "{conf.name}-data"),
        web_enabled=False,
        topic_disable_leader=True,
        producer_acks=-1,
        consumer_auto_offset_reset="earliest",
        topic_partitions=settings.kafka.partitions,
    )

    def raw_topic(name: str) -> faust.TopicT:
        return app.topic(name, key_serializer="raw", value_serializer="raw")

    transactions = raw_topic(settings.topics.name("transactions"))
    labels = raw_topic(settings.topics.name("labels"))
    outputs = {name: raw_topic(name) for name in (pipeline.scores_topic,
                                                  pipeline.dead_letter_topic,
                                                  pipeline.drift_topic)}

    async def send_all(emits: list[Emit]) -> None:
        for emit in emits:
            await outputs[emit.topic].send(key=emit.key, value=emit.value)

    async def batches(stream: Any) -> AsyncIterator[list[RawRecord]]:
        """The stream's records, ``worker.batch_max`` at most, collected for a short while."""
        worker = settings.worker
        async for events in stream.take_events(worker.batch_max, worker.batch_within_seconds):
            yield [_raw(event, app) for event in events]

    @app.agent(transactions, name="score")
    async def score(stream: Any) -> None:
        async for batch in batches(stream):
            await send_all(await _with_retries(pipeline.on_transactions, batch, pipeline))

    rebalances = [0]

    async def hold_labels() -> None:
        """While too many labels wait for the stream, take no more: the agent waits, its
        buffer fills and Faust stops fetching the labels topic until it drains (pausing
        the partitions by hand would drop records Faust has fetched). A rebalance
        ends the wait, so that the worker can hand its partitions over."""
        if not pipeline.labels_backlog(held=False):
            return
        log.info("labels topic held: %d labels wait for the stream", len(pipeline.waiting or ()))
        seen = rebalances[0]
        while pipeline.labels_backlog(held=True) and rebalances[0] == seen:
            await asyncio.sleep(settings.worker.label_retry_seconds / 4)
        log.info("labels topic read again: %d labels wait", len(pipeline.waiting or ()))

    @app.agent(labels, name="learn")
    async def learn(stream: Any) -> None:
        async for batch in batches(stream):
            await send_all(await _with_retries(pipeline.on_labels, batch, pipeline))
            await hold_labels()

    @app.timer(settings.worker.label_retry_seconds)
    async def retry_waiting_labels() -> None:
        try:
            await send_all(await pipeline.on_waiting())
        except Exception as exc:  # Redis or Kafka unavailable: the next tick tries again
            pipeline.metrics.errors.labels(stage="infrastructure").inc()
            log.warning("waiting labels: %r; trying again in %.1fs", exc,
                        settings.worker.label_retry_seconds)

    @app.on_partitions_revoked.connect
    async def on_revoked(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        revoked = args[0] if args else kwargs.get("revoked", ())
        rebalances[0] += 1
        await send_all(await pipeline.on_revoked([(tp.topic, tp.partition) for tp in revoked]))

    @app.timer(settings.model.snapshot_every_seconds)
    async def publish_snapshot() -> None:
        await pipeline.on_timer()

    return app


def _raw(event: Any, app: faust.App) -> RawRecord:
    message = event.message
    highwater = app.consumer.highwater(message.tp)  # as of the fetch; None if unknown
    behind = highwater is not None and message.offset + 1 < highwater
    return RawRecord(message.topic, message.partition, message.offset, event.key, event.value,
                     behind)


def _where(records: object) -> str:
    batch = records if isinstance(records, list) else [records]
    first = batch[0] if batch and isinstance(batch[0], RawRecord) else None
    if first is None:
        return repr(records)[:80]
    return f"{len(batch)} record(s) from {first.topic}[{first.partition}]@{first.offset}"


async def _with_retries(handle: Callable[[T], Awaitable[list[Emit]]], records: T,
                        pipeline: Pipeline) -> list[Emit]:
    """Run ``handle`` until it succeeds: infrastructure errors never skip a record.

    Events are acknowledged (their offsets committed) only after this returns.
    """
    attempt = 0
    while True:
        try:
            return await handle(records)
        except Exception as exc:
            delay = RETRY_BACKOFF[min(attempt, len(RETRY_BACKOFF) - 1)]
            pipeline.metrics.errors.labels(stage="infrastructure").inc()
            log.warning("%s failed: %r; retrying in %.1fs", _where(records), exc, delay)
            attempt += 1
            await asyncio.sleep(delay)
