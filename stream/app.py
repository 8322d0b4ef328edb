"""The Faust app: two agents and a timer, each a thin shell over :class:`Pipeline`.

Built by :func:`create_app`; nothing is created at import.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import faust

from stream.processing import Emit, Pipeline, RawRecord
from stream.settings import Settings

log = logging.getLogger(__name__)

Handler = Callable[[RawRecord], Awaitable[list[Emit]]]

#: Seconds between retries when Redis or the model are not available.
RETRY_BACKOFF = (0.1, 0.5, 1.0, 2.0, 5.0)


def create_app(settings: Settings, pipeline: Pipeline) -> faust.App:
    """A Faust app whose agents score transactions and learn from labels."""
    app = faust.App(
        settings.worker.app_id,
        broker=f"kafka://{settings.kafka.bootstrap_servers}",
        store="memory://",
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
                                                  pipeline.dead_letter_topic)}

    async def consume(stream: Any, handle: Handler) -> None:
        async for event in stream.events():
            message = event.message
            record = RawRecord(message.topic, message.partition, message.offset,
                               event.key, event.value)
            for emit in await _with_retries(handle, record, pipeline):
                await outputs[emit.topic].send(key=emit.key, value=emit.value)

    @app.agent(transactions, name="score")
    async def score(stream: Any) -> None:
        await consume(stream, pipeline.on_transaction)

    @app.agent(labels, name="learn")
    async def learn(stream: Any) -> None:
        await consume(stream, pipeline.on_label)

    @app.timer(settings.model.snapshot_every_seconds)
    async def publish_snapshot() -> None:
        await pipeline.on_timer()

    return app


async def _with_retries(handle: Handler, record: RawRecord, pipeline: Pipeline) -> list[Emit]:
    """Run ``handle`` until it succeeds: infrastructure errors never skip a record."""
    attempt = 0
    while True:
        try:
            return await handle(record)
        except Exception as exc:
            delay = RETRY_BACKOFF[min(attempt, len(RETRY_BACKOFF) - 1)]
            pipeline.metrics.errors.labels(stage="infrastructure").inc()
            log.warning("%s[%d]@%d: %r; retrying in %.1fs",
                        record.topic, record.partition, record.offset, exc, delay)
            attempt += 1
            await asyncio.sleep(delay)
