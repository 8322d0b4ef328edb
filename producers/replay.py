"""Replay transactions and labels into Kafka, at real time, N times faster, or flat out.

Events are interleaved by their own times (a transaction's event time, a
label's arrival time; a transaction first on a tie) and carry them in the
record. Transactions are keyed by card id, labels by transaction id. The
producer is idempotent with ``acks=all`` and retries; every failed delivery
is counted and reported in the summary, never lost silently. Within a
partition (so within a card) events go out in order.

Records are encoded column-wise by :func:`producers.events.encode_events`, so the loop
per event only hands bytes to the producer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import polars as pl
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from producers.partitions import partition_of

#: Progress callback: (sent, total, seconds elapsed).
Progress = Callable[[int, int, float], object]
log = logging.getLogger(__name__)


class ReplayError(RuntimeError):
    """Kafka stayed unavailable for longer than the replay waits."""


@dataclass
class ReplaySummary:
    """What a replay did."""

    #: Events Kafka confirmed (acks=all).
    sent: int = 0
    failed: int = 0
    #: Records sent again after a failed delivery (a broker outage); Kafka may hold
    #: some twice, which the worker recognises as redeliveries.
    resent: int = 0
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        text = (
            f"sent {self.sent:,} events in {self.seconds:.1f}s ({self.rate:,.0f}/s); "
            f"failed {self.failed:,}"
        )
        if self.resent:
            text += f"; sent again after a broker outage {self.resent:,}"
        if self.failures:
            text += "; first failures: " + "; ".join(self.failures[:3])
        return text


class Replayer:
    """Sends encoded events to the transactions and labels topics, paced by ``speed``.

    Records are gathered into one batch per partition (partition chosen from
    the key, as Kafka's default partitioner does) and handed to an idempotent
    ``acks=all`` aiokafka producer with its compiled record builder:
    kafka-python's per-record ``send`` tops out near 15,000 records/s here,
    too slow for a replay.

    Parameters
    ----------
    bootstrap_servers
        Kafka's bootstrap servers (``host:port``, comma-separated).
    topics
        The transactions topic and the labels topic.
    speed
        ``None`` as fast as possible, ``1.0`` real time, ``N`` N times faster than the
        events' own clock.
    progress
        Called with (sent, total, seconds elapsed) as the replay goes and at its end;
        None: no progress reports.
    progress_every
        Seconds at least between two progress reports.
    retry_seconds
        How long a broker outage (at the start or while sending) is waited out before
        the replay gives up.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        topics: tuple[str, str],
        speed: float | None = None,
        progress: Progress | None = None,
        progress_every: float = 0.5,
        retry_seconds: float = 300.0,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        #: How long a broker outage is waited out before the replay gives up.
        self.retry_seconds = retry_seconds
        self.topics = topics
        self.speed = speed
        self.progress = progress
        self.progress_every = progress_every
        self.summary = ReplaySummary()

    def run(self, events: pl.DataFrame) -> ReplaySummary:
        """Send every event, wait for every delivery, return the summary."""
        return asyncio.run(self.run_async(events))

    async def run_async(self, events: pl.DataFrame) -> ReplaySummary:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap_servers,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            max_batch_size=1 << 20,
            request_timeout_ms=30_000,
        )
        deadline = time.monotonic() + self.retry_seconds
        while True:
            try:
                await producer.start()
                break
            except KafkaError as exc:
                if time.monotonic() > deadline:
                    raise ReplayError(
                        f"kafka.bootstrap_servers: no broker answered for "
                        f"{self.retry_seconds:.0f} s ({exc!r})"
                    ) from exc
                log.warning("no broker answers yet (%r); trying again", exc)
                await asyncio.sleep(1.0)
        try:
            await self._send_all(producer, events)
        finally:
            await producer.stop()
        return self.summary

    async def _send_all(self, producer: AIOKafkaProducer, events: pl.DataFrame) -> None:
        total = events.height
        sender = _BatchSender(producer, self.topics, self.summary, self.retry_seconds)
        await sender.load_partitions()
        started = time.monotonic()
        next_report = started
        first_time = events["time"][0] if total else 0.0
        for i, (at, kind, key, value) in enumerate(
            events.select("time", "kind", "key", "value").iter_rows()
        ):
            if self.speed is not None:
                ahead = (at - first_time) / self.speed - (time.monotonic() - started)
                if ahead > 0.005:
                    await sender.flush()  # what is due goes out before we wait
                    await asyncio.sleep(ahead)
            await sender.add(kind, key.encode(), value.encode())
            if self.progress is not None and (i & 1023) == 0 and time.monotonic() >= next_report:
                self.progress(i, total, time.monotonic() - started)
                next_report = time.monotonic() + self.progress_every
        await sender.flush()
        await sender.wait()
        self.summary.seconds = time.monotonic() - started
        if self.progress is not None:
            self.progress(total, total, self.summary.seconds)


@dataclass
class _Batch:
    """One partition's records on their way: kept until Kafka has them, to send again."""

    kind: int
    partition: int
    records: list[tuple[bytes, bytes]]
    future: asyncio.Future[Any] | None = None


class _BatchSender:
    """One open record batch per (topic, partition); full batches are sent.

    A broker outage is waited out: a batch that cannot be handed to the producer, or
    whose delivery fails, is sent again (its records are kept until delivered) for up to
    ``retry_seconds`` of outage; only then are its records counted as failed. A batch
    sent again may be delivered twice, which the worker recognises (redeliveries).
    """

    def __init__(
        self,
        producer: AIOKafkaProducer,
        topics: tuple[str, str],
        summary: ReplaySummary,
        retry_seconds: float = 300.0,
    ) -> None:
        self.producer = producer
        self.topics = topics
        self.summary = summary
        self.retry_seconds = retry_seconds
        self.partitions: list[list[int]] = []
        self.open: dict[tuple[int, int], tuple[Any, list[tuple[bytes, bytes]]]] = {}
        self.in_flight: deque[_Batch] = deque()
        #: When the current outage began (monotonic), None while Kafka takes our batches.
        self._outage_since: float | None = None

    async def load_partitions(self) -> None:
        for topic in self.topics:
            found = await self._retrying(
                partial(self.producer.partitions_for, topic), f"{topic}: partitions"
            )
            if not found:
                raise RuntimeError(f"topic {topic}: no partitions (does it exist?)")
            self.partitions.append(sorted(found))

    async def add(self, kind: int, key: bytes, value: bytes) -> None:
        partition = partition_of(key, self.partitions[kind])
        opened = self.open.get((kind, partition))
        if opened is None:
            opened = self.open[(kind, partition)] = (self.producer.create_batch(), [])
        builder, records = opened
        if builder.append(key=key, value=value, timestamp=None) is None:
            await self._send(_Batch(kind, partition, records), builder)
            builder = self.producer.create_batch()
            builder.append(key=key, value=value, timestamp=None)
            records = []
            self.open[(kind, partition)] = (builder, records)
        records.append((key, value))

    async def flush(self) -> None:
        for (kind, partition), (builder, records) in list(self.open.items()):
            await self._send(_Batch(kind, partition, records), builder)
        self.open.clear()

    async def _send(self, batch: _Batch, builder: Any = None) -> None:
        if builder is None:  # sent again: a new builder with the same records
            builder = self._built(batch.records)
        builder.close()
        topic = self.topics[batch.kind]
        batch.future = await self._retrying(
            lambda: self.producer.send_batch(builder, topic, partition=batch.partition),
            f"{topic}[{batch.partition}]",
        )
        self.in_flight.append(batch)
        while (
            self.in_flight
            and self.in_flight[0].future is not None
            and self.in_flight[0].future.done()
        ):
            await self._settle(self.in_flight.popleft())

    def _built(self, records: list[tuple[bytes, bytes]]) -> Any:
        """A new record batch holding ``records`` (to send them again)."""
        builder = self.producer.create_batch()
        for key, value in records:
            builder.append(key=key, value=value, timestamp=None)
        return builder

    async def _retrying(self, call: Callable[[], Awaitable[Any]], where: str) -> Any:
        """``call()`` until the producer takes it, through an outage of up to
        ``retry_seconds`` (counted from the outage's start until a delivery is confirmed)."""
        while True:
            try:
                return await call()
            except KafkaError as exc:
                self._waiting(where, exc)
                await asyncio.sleep(1.0)

    def _waiting(self, where: str, exc: BaseException) -> None:
        now = time.monotonic()
        if self._outage_since is None:
            self._outage_since = now
            log.warning("%s: %r; waiting for Kafka (up to %.0f s)", where, exc, self.retry_seconds)
        if now - self._outage_since > self.retry_seconds:
            raise ReplayError(
                f"{where}: Kafka unavailable for more than "
                f"{self.retry_seconds:.0f} s (last error: {exc!r})"
            ) from exc

    async def _settle(self, batch: _Batch) -> None:
        """Wait for ``batch``'s delivery; send it again if it failed."""
        while True:
            try:
                assert batch.future is not None
                await batch.future
                self.summary.sent += len(batch.records)
                if self._outage_since is not None:  # (only a delivery ends an outage: a
                    # batch is queued at once even while no broker answers)
                    log.warning(
                        "Kafka confirms records again after %.1f s",
                        time.monotonic() - self._outage_since,
                    )
                    self._outage_since = None
                return
            except KafkaError as exc:
                where = f"{self.topics[batch.kind]}[{batch.partition}]"
                self.summary.resent += len(batch.records)
                try:
                    self._waiting(where, exc)
                except ReplayError as failed:
                    self.summary.failed += len(batch.records)
                    if len(self.summary.failures) < 20:
                        self.summary.failures.append(
                            f"{where}: {len(batch.records)} records: {failed}"
                        )
                    return
                await asyncio.sleep(1.0)
                builder = self._built(batch.records)
                builder.close()
                batch.future = await self._retrying(
                    partial(
                        self.producer.send_batch,
                        builder,
                        self.topics[batch.kind],
                        partition=batch.partition,
                    ),
                    where,
                )

    async def wait(self) -> None:
        while self.in_flight:
            await self._settle(self.in_flight.popleft())
