"""Records the stream framework skipped: found by offset, fetched again, processed first.

Faust can hand a batch on after a rebalance with records missing before it:
records it had fetched while the group rebalanced are dropped and their
offsets acknowledged, so the consumer group moves past them (measured here:
one transaction of 7,151 never scored after a scorer was killed, its offset
committed by the group). At-least-once delivery is ours to keep, so every
consumed partition has a **watermark** in Redis, the next offset processed
(raised only, so an old owner finishing late cannot move it back). A batch
that starts past its partition's watermark has a gap: the missing records
are read again from Kafka with a plain consumer and processed before the
batch. A record processed twice is harmless (every effect is idempotent by
transaction id); a record never processed is not.

Keys: ``{p}:offsets:{group}:{topic}`` (hash of partition -> next offset).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from prometheus_client import CollectorRegistry, Counter

from stream.records import RawRecord
from stream.runtime.marks import RaisedMarks

log = logging.getLogger(__name__)

class Refetch:
    """Reads a range of one partition again, with its own consumer (no group, no commit)."""

    def __init__(self, bootstrap: str, timeout: float = 30.0) -> None:
        self.bootstrap = bootstrap
        self.timeout = timeout
        self._consumer: KafkaConsumer | None = None

    def read(self, topic: str, partition: int, start: int, end: int) -> list[RawRecord]:
        """The records of ``topic[partition]`` at offsets ``start`` to ``end - 1`` (those
        still in the log). Blocks: run it in a thread."""
        if self._consumer is None:
            self._consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None,
                                           enable_auto_commit=False)
        consumer = self._consumer
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        consumer.seek(tp, start)
        out: list[RawRecord] = []
        deadline = time.monotonic() + self.timeout
        while consumer.position(tp) < end and time.monotonic() < deadline:
            for message in consumer.poll(timeout_ms=500).get(tp, []):
                if message.offset < end:
                    out.append(RawRecord(topic, partition, message.offset, message.key,
                                         message.value, behind=True))
        if consumer.position(tp) < end:
            raise TimeoutError(f"{topic}[{partition}]: could not read offsets {start} to "
                               f"{end - 1} again within {self.timeout:g}s")
        return out

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None


class Gaps:
    """Finds and fills the gaps in what one consumer group processed of its topics."""

    def __init__(self, client: Any, key_prefix: str, group: str, refetch: Refetch,
                 registry: CollectorRegistry | None = None) -> None:
        self.client = client
        self.prefix = f"{key_prefix}:offsets:{group}"
        self.refetch = refetch
        self.recovered = Counter("fraudstream_records_recovered",
                                 "Records the stream framework skipped, read again from Kafka "
                                 "and processed", ["topic"], registry=registry)

    def _marks(self, topic: str) -> RaisedMarks:
        return RaisedMarks(self.client, f"{self.prefix}:{topic}")

    async def complete(self, batch: Sequence[RawRecord]) -> list[RawRecord]:
        """``batch`` with the records skipped before it put back in front, in order."""
        firsts: dict[tuple[str, int], int] = {}
        for record in batch:
            firsts.setdefault((record.topic, record.partition), record.offset)
        missing: list[RawRecord] = []
        for topic in {t for t, _ in firsts}:
            partitions = [p for t, p in firsts if t == topic]
            marks = await self._marks(topic).get(partitions)
            for partition, mark in zip(partitions, marks, strict=True):
                first = firsts[(topic, partition)]
                if mark is None or int(mark) >= first:
                    continue
                found = await asyncio.to_thread(self.refetch.read, topic, partition,
                                                int(mark), first)
                log.warning("%s[%d]: offsets %d to %d were skipped by the consumer; read "
                            "again and processed first (%d records)", topic, partition,
                            int(mark), first - 1, len(found))
                self.recovered.labels(topic=topic).inc(len(found))
                missing += found
        return [*missing, *batch] if missing else list(batch)

    async def done(self, batch: Sequence[RawRecord]) -> None:
        """``batch`` was processed: raise its partitions' watermarks past it."""
        nexts: dict[tuple[str, int], int] = {}
        for record in batch:
            key = (record.topic, record.partition)
            nexts[key] = max(nexts.get(key, 0), record.offset + 1)
        for topic in {t for t, _ in nexts}:
            await self._marks(topic).raise_to({p: n for (t, p), n in nexts.items() if t == topic})
