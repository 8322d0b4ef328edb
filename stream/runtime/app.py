"""The Faust app of a worker's roles: consumers, timers and tasks, each a thin shell
over :class:`Pipeline`.

The score role reads ``transactions``, the learn role ``labels``; a monitor
without the score (learn) role in its process reads ``scored``
(``learned``). Each is a :class:`~stream.runtime.consumer.BatchConsumer` of
its own in the process's consumer group: Faust runs the timers and tasks
and the producer, and no consumer of its own (its per-record stream cost
most of a drain: docs/performance.md). Built by :func:`create_app`; nothing
is created at import.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import faust
from aiokafka.structs import TopicPartition
from mode import Service
from tenacity import AsyncRetrying, RetryCallState

from models.errors import FencedError
from stream.runtime.consumer import BatchConsumer, Skip
from stream.runtime.loop import watch_loop
from stream.runtime.output import produce_and_wait
from stream.runtime.processing import Pipeline
from stream.runtime.records import Emit, RawRecord
from stream.runtime.roles import group_id
from stream.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

#: Seconds between retries when Redis or the model are not available.
RETRY_BACKOFF = (0.1, 0.5, 1.0, 2.0, 5.0)

#: How often the labels partitions are paused or resumed as the stream time moves on.
LABELS_STEER_SECONDS = 0.1


def _never_fenced(why: str) -> None:
    raise RuntimeError(why)


class _Consumers(Service):
    """Runs the app's batch consumers; on stop, each finishes and commits its batch."""

    def __init__(self, consumers: list[BatchConsumer]) -> None:
        super().__init__()
        self.consumers = consumers

    async def on_start(self) -> None:
        for consumer in self.consumers:
            self.add_future(consumer.run())

    async def on_stop(self) -> None:
        await asyncio.gather(*(consumer.stop() for consumer in self.consumers))


def create_app(
    settings: Settings, pipeline: Pipeline, on_fenced: Callable[[str], None] = _never_fenced
) -> faust.App:
    """A Faust app running ``pipeline``'s roles; ``on_fenced`` is called when the learner
    finds its lease taken over (it steps down)."""
    faust_dir = (settings.services.state_dir / "faust").resolve()
    faust_dir.mkdir(parents=True, exist_ok=True)  # Faust creates only the last level
    roles = pipeline.roles
    worker = settings.worker
    group = group_id(worker.app_id, roles)
    app = faust.App(
        group,
        broker=f"kafka://{settings.kafka.bootstrap_servers}",
        store="memory://",
        # Faust's own state (none: tables are not used) under the state folder, not the cwd
        datadir=str(faust_dir / "{conf.name}-data"),
        web_enabled=False,
        producer_acks=-1,
        producer_linger_ms=settings.kafka.producer_linger_ms,
        producer_max_batch_size=settings.kafka.producer_batch_bytes,
        topic_partitions=settings.kafka.partitions,
    )
    app.producer_only = True  # the records are read by the batch consumers, not Faust

    topic = settings.topics.name
    consumers: list[BatchConsumer] = []

    def consume(
        topics: list[str],
        handler: Callable[[list[RawRecord]], Awaitable[None]],
        name: str,
        skip: Skip | None = None,
    ) -> BatchConsumer:
        """A member of this process's group reading ``topics`` on its own (a scorer waiting
        for the labels never stops the labels)."""
        consumer = BatchConsumer(
            settings.kafka.bootstrap_servers,
            group,
            topics,
            handler,
            worker.batch_max,
            worker.batch_within_seconds,
            worker.session_timeout_seconds,
            worker.heartbeat_seconds,
            revoked_here,
            assigned_here,
            name,
            skip,
            settings.kafka.consumer_fetch_bytes,
        )
        consumers.append(consumer)
        return consumer

    async def send_all(emits: list[Emit]) -> None:
        """Produce ``emits`` and wait until Kafka has them all (acks=all): a batch's offsets
        are committed only after its outputs are delivered, so a crash loses none.
        Straight to aiokafka's producer, in one batch per partition
        (:mod:`stream.runtime.output`): a Faust ``Topic.send`` per record cost as much as
        the scoring itself, a producer ``send`` per record 11 us (py-spy)."""
        if emits:
            producer = await app.maybe_start_producer()
            await produce_and_wait(producer._ensure_producer(), emits)  # Faust's aiokafka one

    async def emit_from(make: Awaitable[list[Emit]]) -> None:
        """What a timer or callback made, sent until Kafka has it (the work is done)."""
        await _with_retries(send_all, await make, pipeline, on_fenced)

    def handling(
        handler: Callable[[list[RawRecord]], Awaitable[list[Emit]]],
        after: Callable[[], Awaitable[None]] | None = None,
        what: str = "",
    ) -> Callable[[list[RawRecord]], Awaitable[None]]:
        async def handle(batch: list[RawRecord]) -> None:
            emits = await _with_retries(handler, batch, pipeline, on_fenced)
            await _with_retries(send_all, emits, pipeline, on_fenced)  # at least once
            if after is not None:
                await _guarded(what, pipeline, on_fenced, after)

        return handle

    async def assigned_here(assigned: set[TopicPartition]) -> None:
        if pipeline.learn is not None and any(tp.topic == topic("labels") for tp in assigned):
            pipeline.learn.flow.assign(
                tp.partition for tp in assigned if tp.topic == topic("labels")
            )

    async def revoked_here(revoked: set[TopicPartition]) -> None:
        if pipeline.learn is not None:  # read again from their committed offsets
            pipeline.learn.flow.forget(
                tp.partition for tp in revoked if tp.topic == topic("labels")
            )
        await _guarded(
            "partitions revoked",
            pipeline,
            on_fenced,
            lambda: emit_from(pipeline.on_revoked([(tp.topic, tp.partition) for tp in revoked])),
        )

    #: Flow control ticks (what, tick): after each batch of their consumer, and all
    #: together every LABELS_STEER_SECONDS (the stream time moves without them).
    steers: list[tuple[str, Callable[[], Awaitable[None]]]] = []

    if "score" in roles:
        scoring: list[BatchConsumer] = []
        hold = _scoring_steering(scoring, pipeline, topic("transactions"))
        steers.append(("scoring hold", hold))
        assert pipeline.scorer is not None
        align = pipeline.scorer.align

        def unaligned(readable: set[TopicPartition]) -> set[TopicPartition]:
            """The partitions too far ahead of the slowest in event time: left for now."""
            left = align.skip({tp.partition for tp in readable}, time.monotonic())
            return {tp for tp in readable if tp.partition in left}

        scoring.append(
            consume(
                [topic("transactions")],
                handling(pipeline.on_transactions, hold, "scoring hold"),
                "score",
                unaligned,
            )
        )

    if "monitor" in roles and "score" not in roles:
        consume([topic("scored")], handling(pipeline.on_scored), "watch-scored")

    if "monitor" in roles and "learn" not in roles:
        consume([topic("learned")], handling(pipeline.on_learned), "watch-learned")

    if "learn" in roles and "monitor" not in roles and settings.drift.auto_challenger:
        consume([pipeline.drift_topic], handling(pipeline.on_drift_events), "respond")

    if "learn" in roles:
        assert pipeline.learn is not None
        pipeline.learn.forget_after_delivery = True
        parked = asyncio.Lock()  # one at a time: each forgets only what it delivered

        async def learn_parked(make: Callable[[], Awaitable[list[Emit]]]) -> None:
            assert pipeline.learn is not None
            async with parked:
                try:
                    emits = await make()
                except BaseException:  # what was learned is not sent: tried again
                    pipeline.learn.keep_undelivered()
                    raise
                await _with_retries(send_all, emits, pipeline, on_fenced)
                await pipeline.learn.forget_delivered()

        async def learn_due() -> None:
            assert pipeline.learn is not None
            await learn_parked(pipeline.learn.learn_due)

        async def learn_waiting() -> None:
            await learn_parked(pipeline.on_waiting)

        labelling: list[BatchConsumer] = []
        pipeline.learn.flow.assign(())  # blind until the labels consumer has its partitions
        steer = _labels_steering(labelling, pipeline, topic("labels"), learn_due, learn_waiting)
        steers.append(("labels flow", steer))
        labelling.append(
            consume([topic("labels")], handling(pipeline.on_labels, steer, "labels flow"), "learn")
        )

        @app.timer(worker.label_retry_seconds)
        async def retry_waiting_labels() -> None:
            await _guarded("waiting labels", pipeline, on_fenced, learn_waiting)

    if steers:

        @app.task
        async def steer_flow() -> None:
            """Pause or resume the labels and the transactions as the stream time moves."""
            while not app.should_stop:
                await asyncio.sleep(LABELS_STEER_SECONDS)
                for what, tick in steers:
                    await _guarded(what, pipeline, on_fenced, tick)

    app.service(_Consumers(consumers))  # type: ignore[arg-type]  # an instance is started too

    @app.task
    async def loop_lag() -> None:
        await watch_loop(pipeline.metrics.loop_lag.observe)

    @app.timer(settings.model.snapshot_every_seconds)
    async def publish_snapshot() -> None:
        await _guarded("snapshot timer", pipeline, on_fenced, pipeline.on_timer)

    return app


async def _guarded(
    what: str,
    pipeline: Pipeline,
    on_fenced: Callable[[str], None],
    tick: Callable[[], Awaitable[None]],
) -> None:
    """Run one timer tick; no exception escapes it (the next tick tries again)."""
    try:
        await tick()
    except FencedError as exc:
        on_fenced(str(exc))
    except Exception as exc:  # Redis or Kafka unavailable, or a bug: logged, retried
        pipeline.metrics.errors.labels(stage="infrastructure").inc()
        log.warning("%s: %r; trying again at the next tick", what, exc)


def _labels_steering(
    consumers: list[BatchConsumer],
    pipeline: Pipeline,
    topic: str,
    learn_due: Callable[[], Awaitable[None]],
    learn_waiting: Callable[[], Awaitable[None]],
) -> Callable[[], Awaitable[None]]:
    """Apply the learner's :class:`~stream.runtime.flow.LabelFlow` to the labels consumer
    (``consumers``: it, once made).

    Partitions are paused in the Kafka client itself: it stops fetching them and
    keeps its position, so nothing is skipped and a resumed partition goes on from
    the first record not yet handed over. Parked labels the stream has reached are
    learned here too (``learn_due``), and the frontier is published for the scorers.
    Once the scorers have every transaction in Kafka and the stream time stands still
    (the end of a replay), the labels past it are learned by their own rule
    (``learn_waiting``: :meth:`stream.runtime.waiting.Waiting.passed`) at this pace, not at the
    next retry: a replay's last labels were learned at 3,000/s, a second at a time.
    """
    assert pipeline.learn is not None
    learn = pipeline.learn

    async def steer() -> None:
        flow = learn.flow
        if flow.blind and flow.assigned:  # just assigned: which hold nothing to read?
            for consumer in consumers:
                for p in flow.assigned - set(flow.newest):
                    if await consumer.at_end(TopicPartition(topic, p)):
                        flow.at_end(p)
        now = await pipeline.stream_time()
        caught_up = flow.stalled(now) and await learn.caught_up()
        if learn.waiting and (caught_up or (flow.idle(now) and flow.paused)):
            await learn_waiting()  # (paused while idle: too many labels past the last one)
        pause, resume = flow.decide(now, len(learn.waiting or ()), caught_up)
        for consumer in consumers:
            if pause:
                consumer.pause({TopicPartition(topic, p) for p in pause})
            if resume:
                consumer.resume({TopicPartition(topic, p) for p in resume})
        if pause:
            pipeline.metrics.labels_pauses.inc(len(pause))
        if pause or resume:
            pipeline.metrics.labels_paused.set(len(flow.paused))
        earliest = None if learn.waiting is None else learn.waiting.earliest()
        if earliest is not None and earliest <= now:  # parked labels the stream reached:
            await learn_due()  # learned now, not at the next retry (the scorers may wait)
        await learn.publish_frontier(now)

    return steer


def _scoring_steering(
    consumers: list[BatchConsumer], pipeline: Pipeline, topic: str
) -> Callable[[], Awaitable[None]]:
    """Hold the transactions partitions of this process while its scorer is too far past
    the labels read (:class:`~stream.runtime.flow.ScoreHold`), paused in the Kafka client
    as the labels are (:func:`_labels_steering`). Partitions assigned while held are held
    too; only the partitions this paused are resumed."""
    assert pipeline.scorer is not None
    scorer = pipeline.scorer
    held: set[TopicPartition] = set()

    async def steer() -> None:
        hold = await scorer.holding()
        for consumer in consumers:
            mine = {tp for tp in consumer.assignment() if tp.topic == topic}
            if hold:
                new = mine - held
                consumer.pause(new)
                held.update(new)
            elif held:
                consumer.resume(held & mine)
                held.clear()

    return steer


def _where(records: object) -> str:
    batch = records if isinstance(records, list) else [records]
    first = batch[0] if batch and isinstance(batch[0], RawRecord) else None
    if first is None:
        return repr(records)[:80]
    return f"{len(batch)} record(s) from {first.topic}[{first.partition}]@{first.offset}"


async def _with_retries(
    handle: Callable[[T], Awaitable[R]],
    records: T,
    pipeline: Pipeline,
    on_fenced: Callable[[str], None] = _never_fenced,
) -> R:
    """Run ``handle`` until it succeeds: infrastructure errors never skip a record.

    Events are acknowledged (their offsets committed) only after this returns. Each failure
    is counted and logged, and waited out by :data:`RETRY_BACKOFF`. A learner whose lease
    was taken over steps down (``on_fenced``) instead, and nothing more is done until the
    lease is back.
    """

    def delay(state: RetryCallState) -> float:
        failure = state.outcome.exception() if state.outcome else None
        if isinstance(failure, FencedError):
            return RETRY_BACKOFF[-1]
        return RETRY_BACKOFF[min(state.attempt_number - 1, len(RETRY_BACKOFF) - 1)]

    def failed(state: RetryCallState) -> None:
        failure = state.outcome.exception() if state.outcome else None
        if isinstance(failure, FencedError):
            on_fenced(str(failure))
            return
        pipeline.metrics.errors.labels(stage="infrastructure").inc()
        log.warning(
            "%s failed: %r; retrying in %.1fs", _where(records), failure, state.upcoming_sleep
        )

    retrying = AsyncRetrying(wait=delay, before_sleep=failed, reraise=True)
    return await retrying(handle, records)
