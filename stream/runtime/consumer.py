"""A consumer group member that hands its records on in batches and commits each batch's
offsets only once everything the batch produced is in Kafka.

Below Faust's per-record stream: a share of each partition's fetched records
per batch (round robin), no per-record event, buffer or acknowledgement, and
no records skipped around a rebalance (Faust's stream acknowledges records it
fetched during a rebalance and drops them; docs/scaling.md).

The guarantees (at least once, with idempotent effects: exactly once in
effect):

- a batch's offsets are committed after its handler returned and its
  outputs were delivered (``acks=all``); a crash before that redelivers the
  batch, and every effect of a record is idempotent by its id;
- a rebalance waits for the batch in hand: the revoked partitions' last
  batch is committed before they move, and records fetched for a partition
  that was revoked meanwhile are not handed on (their new owner reads them);
- a partition is paused and resumed in the client itself (it keeps its
  position: nothing is skipped, nothing is fetched while paused);
- on stop, the batch in hand is finished and committed, then the member
  leaves the group (its partitions move at once, not after the session).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, ConsumerStoppedError, IllegalStateError, KafkaError
from aiokafka.structs import OffsetAndMetadata, TopicPartition

from stream.runtime.records import RawRecord

log = logging.getLogger(__name__)

#: Handles a batch (in order); returns once its outputs are delivered.
Handler = Callable[[list[RawRecord]], Awaitable[None]]
#: Told of the partitions taken from this member (after its batch in hand is committed),
#: or given to it.
OnRevoked = Callable[[set[TopicPartition]], Awaitable[None]]
OnAssigned = Callable[[set[TopicPartition]], Awaitable[None]]
#: Of the partitions that may be read now, those to leave unread for this fetch (their
#: fetched records stay in the client).
Skip = Callable[[set[TopicPartition]], set[TopicPartition]]

#: The longest a consumer with nothing fetched waits for records before looking again
#: (at its assignment and paused partitions).
IDLE_WAIT = 0.5

#: Seconds between tries of a commit that failed for want of a broker.
COMMIT_RETRY_SECONDS = (0.1, 0.5, 1.0, 2.0, 5.0)


async def _nothing(revoked: set[TopicPartition]) -> None:
    return None


class BatchConsumer:
    """Reads ``topics`` as a member of ``group`` and hands ``handler`` batches of at most
    ``batch_max`` records, waiting at most ``within`` seconds for a batch to fill.

    Run it with :meth:`run` (a task); :meth:`stop` ends it cleanly. ``fetch_bytes``: the
    most fetched of one partition at a time (Kafka's ``max.partition.fetch.bytes``; a
    record batch larger than that still comes whole).
    """

    def __init__(
        self,
        bootstrap: str,
        group: str,
        topics: Collection[str],
        handler: Handler,
        batch_max: int,
        within: float,
        session_timeout: float,
        heartbeat: float,
        on_revoked: OnRevoked = _nothing,
        on_assigned: OnAssigned = _nothing,
        name: str = "",
        skip: Skip | None = None,
        fetch_bytes: int = 1 << 20,
    ) -> None:
        self.topics = list(topics)
        self.skip = skip
        self.group = group
        self.handler = handler
        self.batch_max = batch_max
        self.within = within
        self.on_revoked = on_revoked
        self.on_assigned = on_assigned
        self.name = name or ",".join(self.topics)
        self._options: dict[str, Any] = dict(
            bootstrap_servers=bootstrap,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=batch_max,
            # What the client holds of each partition, fetched ahead (while it is paused
            # too): its consumers' partitions times this is what a process keeps in hand.
            max_partition_fetch_bytes=fetch_bytes,
            session_timeout_ms=int(session_timeout * 1000),
            heartbeat_interval_ms=int(heartbeat * 1000),
            # A batch may wait for the labels (the scoring hold) or for Redis: far longer
            # than a poll interval would allow by default, and harmless (heartbeats go on).
            max_poll_interval_ms=900_000,
        )
        self._client: AIOKafkaConsumer | None = None
        #: Held while a batch is handled and committed: a rebalance waits for it.
        self._lock = asyncio.Lock()
        self._stopping = False
        self._started = False

    async def start(self) -> None:
        """Connect and subscribe (the group is joined at the first fetch); a broker that
        does not answer is waited for."""
        attempt = 0
        while not self._stopping:
            client = AIOKafkaConsumer(**self._options)  # made in its event loop
            try:
                await client.start()
                self._client = client
                break
            except KafkaError as exc:
                await client.stop()
                delay = COMMIT_RETRY_SECONDS[min(attempt, len(COMMIT_RETRY_SECONDS) - 1)]
                log.warning(
                    "%s: no Kafka broker answers (%r); trying again in %.1fs", self.name, exc, delay
                )
                attempt += 1
                await asyncio.sleep(delay)
        else:
            return
        self.client.subscribe(self.topics, listener=_Listener(self))
        self._started = True

    async def run(self) -> None:
        """Fetch, handle and commit batches until :meth:`stop`."""
        try:
            if not self._started:
                await self.start()
            while not self._stopping:
                fetched = await self._fetch()
                if fetched and not self._stopping:
                    async with self._lock:
                        await self._handle(fetched)
        except ConsumerStoppedError:
            if not self._stopping:
                raise

    async def _fetch(self) -> dict[TopicPartition, list[Any]]:
        """The next batch: an equal share of ``batch_max`` from each partition that has
        records (round robin, as Faust did), so the partitions move on in step. (One
        ``getmany`` of ``batch_max`` drains a partition's whole fetch, about a megabyte,
        before the next: partitions days apart in event time, which the drift monitor then
        had to hold back, and released out of order.)"""
        client = self.client
        readable = client.assignment() - client.paused()
        skipped = self.skip(readable) if self.skip is not None and readable else set()
        partitions = sorted(readable - skipped, key=lambda tp: (tp.topic, tp.partition))
        share = max(1, self.batch_max // max(1, len(partitions)))
        fetched: dict[TopicPartition, list[Any]] = {}
        for tp in partitions:
            try:
                fetched.update(await client.getmany(tp, timeout_ms=0, max_records=share))
            except IllegalStateError:  # revoked meanwhile
                continue
        if fetched:
            return fetched
        # Nothing buffered: wait for the next fetch (getmany returns as soon as records
        # come, so a longer wait costs no latency; a short one woke an idle worker 100
        # times a second per consumer), from the partitions not skipped.
        wait = int(max(self.within, IDLE_WAIT) * 1000)
        if not skipped:
            batch: dict[Any, list[Any]] = await client.getmany(timeout_ms=wait, max_records=share)
            return batch
        if not partitions:
            await asyncio.sleep(self.within)
            return {}
        try:
            some: dict[Any, list[Any]] = await client.getmany(
                *partitions, timeout_ms=wait, max_records=share
            )
            return some
        except IllegalStateError:  # revoked meanwhile
            return {}

    async def _handle(self, fetched: dict[TopicPartition, list[Any]]) -> None:
        mine = self.client.assignment()
        batch: list[RawRecord] = []
        ends: dict[TopicPartition, int] = {}
        for tp, messages in fetched.items():
            if tp not in mine or not messages:  # revoked since the fetch: its owner reads it
                continue
            highwater = self.client.highwater(tp)
            for m in messages:
                behind = highwater is not None and m.offset + 1 < highwater
                batch.append(RawRecord(m.topic, m.partition, m.offset, m.key, m.value, behind))
            ends[tp] = messages[-1].offset + 1
        if not batch:
            return
        await self.handler(batch)
        await self._commit(ends)

    async def _commit(self, ends: dict[TopicPartition, int]) -> None:
        """Commit ``ends``; wait out a broker outage; a partition moved meanwhile is its new
        owner's (its records are read again there, and count once)."""
        attempt = 0
        while True:
            offsets = {
                tp: OffsetAndMetadata(end, "")
                for tp, end in ends.items()
                if tp in self.client.assignment()
            }
            if not offsets:
                return
            try:
                await self.client.commit(offsets)
                return
            except (CommitFailedError, IllegalStateError) as exc:  # rebalanced: not ours
                log.warning(
                    "%s: offsets not committed (%r): the records are read again by "
                    "their partition's owner",
                    self.name,
                    exc,
                )
                return
            except KafkaError as exc:
                if self._stopping and attempt >= len(COMMIT_RETRY_SECONDS):
                    log.warning(
                        "%s: stopping without committing %s (%r): read again",
                        self.name,
                        offsets,
                        exc,
                    )
                    return
                delay = COMMIT_RETRY_SECONDS[min(attempt, len(COMMIT_RETRY_SECONDS) - 1)]
                log.warning("%s: commit failed (%r); retrying in %.1fs", self.name, exc, delay)
                attempt += 1
                await asyncio.sleep(delay)

    @property
    def client(self) -> AIOKafkaConsumer:
        if self._client is None:
            raise RuntimeError(f"{self.name}: not started")
        return self._client

    def pause(self, partitions: Collection[TopicPartition]) -> None:
        """Fetch nothing more from ``partitions`` (their position is kept)."""
        mine = self.assignment() & set(partitions)
        if mine:
            self.client.pause(*mine)

    def resume(self, partitions: Collection[TopicPartition]) -> None:
        mine = self.assignment() & set(partitions)
        if mine:
            self.client.resume(*mine)

    def assignment(self) -> set[TopicPartition]:
        """The partitions this member holds now (none before it started)."""
        return set(self.client.assignment()) if self._started else set()

    async def at_end(self, tp: TopicPartition) -> bool:
        """Whether ``tp`` is known to hold nothing more to read (a fetch answered, and the
        position is its end)."""
        if tp not in self.assignment():
            return False
        highwater = self.client.highwater(tp)
        if highwater is None:
            return False
        try:
            async with asyncio.timeout(1.0):
                return bool(await self.client.position(tp) >= highwater)
        except TimeoutError:
            return False

    async def stop(self, timeout: float = 8.0) -> None:
        """Finish the batch in hand, commit it and leave the group."""
        self._stopping = True
        try:
            async with asyncio.timeout(timeout):
                async with self._lock:
                    pass  # the batch in hand is done
        except TimeoutError:
            log.warning(
                "%s: the batch in hand did not finish within %.0fs: it is read again",
                self.name,
                timeout,
            )
        if self._started:
            await self.client.stop()  # leaves the group: its partitions move at once


class _Listener(ConsumerRebalanceListener):
    """Waits for the batch in hand before partitions move."""

    def __init__(self, consumer: BatchConsumer) -> None:
        self.consumer = consumer

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self.consumer._lock:  # the batch in hand is handled and committed
            if revoked:
                await self.consumer.on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.consumer.on_assigned(set(assigned))
