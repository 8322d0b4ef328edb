"""The Faust app of a worker's roles: agents and timers, each a thin shell over
:class:`Pipeline`.

The score role's agent reads ``transactions``, the learn role's ``labels``;
a monitor without the score (learn) role in its process reads ``scored``
(``learned``). Built by :func:`create_app`; nothing is created at import.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import faust
from aiokafka.structs import TopicPartition

from models.errors import FencedError
from stream.processing import Pipeline
from stream.records import Emit, RawRecord
from stream.runtime.gaps import Gaps
from stream.runtime.loop import watch_loop
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


def create_app(settings: Settings, pipeline: Pipeline,
               on_fenced: Callable[[str], None] = _never_fenced,
               gaps: Gaps | None = None) -> faust.App:
    """A Faust app whose agents run ``pipeline``'s roles; ``on_fenced`` is called when the
    learner finds its lease taken over (it steps down); ``gaps`` puts back the records
    Faust skipped (:mod:`stream.runtime.gaps`)."""
    faust_dir = (settings.services.state_dir / "faust").resolve()
    faust_dir.mkdir(parents=True, exist_ok=True)  # Faust creates only the last level
    roles = pipeline.roles
    worker = settings.worker
    app = faust.App(
        group_id(worker.app_id, roles),
        broker=f"kafka://{settings.kafka.bootstrap_servers}",
        store="memory://",
        # Faust's own state (none: tables are not used) under the state folder, not the cwd
        datadir=str(faust_dir / "{conf.name}-data"),
        web_enabled=False,
        topic_disable_leader=True,
        producer_acks=-1,
        consumer_auto_offset_reset="earliest",
        topic_partitions=settings.kafka.partitions,
        # A dead member's partitions move after this long (Faust's default is 60 s).
        broker_session_timeout=worker.session_timeout_seconds,
        broker_heartbeat_interval=worker.heartbeat_seconds,
        # Records fetched at once, and delivered to an agent ahead of it (Faust's
        # defaults: all that was fetched, and 4,096): a paused labels partition stops
        # within these (stream.runtime.flow). Polls of 2 batches cost 15 % of the
        # transactions-only drain; of 8, 16,000 labels waited in a replay. The buffer
        # holds two polls: with one (or less), a scorer waiting for the labels filled it,
        # the consumer blocked on it, the labels could not come, and the scorer had to
        # give up waiting (fraudstream_scoring_hold_stalls_total: 22-35 of 35-70 holds
        # in the steady drift test, then 0-10 of 7-19).
        broker_max_poll_records=4 * worker.batch_max,
        stream_buffer_maxsize=8 * worker.batch_max,
    )

    def raw_topic(name: str) -> faust.TopicT:
        return app.topic(name, key_serializer="raw", value_serializer="raw")

    transactions = raw_topic(settings.topics.name("transactions"))
    labels = raw_topic(settings.topics.name("labels"))

    async def send_all(emits: list[Emit]) -> None:
        """Produce ``emits`` and wait until Kafka has them all (acks=all): a batch's offsets
        are acknowledged only after its outputs are delivered, so a crash loses none.
        Straight to the producer: a Faust ``Topic.send`` per record cost as much as the
        scoring itself (py-spy)."""
        producer = await app.maybe_start_producer()
        deliveries = [await producer.send(e.topic, e.key, e.value, None, None, None)
                      for e in emits]
        if deliveries:
            await asyncio.gather(*deliveries)

    async def emit_from(make: Awaitable[list[Emit]]) -> None:
        """What a timer or callback made, sent until Kafka has it (the work is done)."""
        await _with_retries(send_all, await make, pipeline, on_fenced)

    async def batches(stream: Any) -> AsyncIterator[list[RawRecord]]:
        """The stream's records, ``worker.batch_max`` at most, collected for a short while."""
        async for events in stream.take_events(worker.batch_max, worker.batch_within_seconds):
            yield [_raw(event, app) for event in events]

    async def handle(handler: Callable[[list[RawRecord]], Awaitable[list[Emit]]],
                     batch: list[RawRecord]) -> None:
        if gaps is not None:
            batch = await _with_retries(gaps.complete, batch, pipeline, on_fenced)
        emits = await _with_retries(handler, batch, pipeline, on_fenced)
        await _with_retries(send_all, emits, pipeline, on_fenced)  # at least once
        if gaps is not None:
            await _with_retries(gaps.done, batch, pipeline, on_fenced)

    #: Flow control ticks (what, tick): after each batch of their agent, and all together
    #: every LABELS_STEER_SECONDS (the stream time moves without them).
    steers: list[tuple[str, Callable[[], Awaitable[None]]]] = []

    if "score" in roles:
        hold = _scoring_steering(app, pipeline, transactions.get_topic_name())
        steers.append(("scoring hold", hold))

        @app.agent(transactions, name="score")
        async def score(stream: Any) -> None:
            assert pipeline.scorer is not None
            pipeline.scorer.buffer_full = stream.channel.queue.full
            async for batch in batches(stream):
                await handle(pipeline.on_transactions, batch)
                await _guarded("scoring hold", pipeline, on_fenced, hold)

    if "monitor" in roles and "score" not in roles:
        @app.agent(raw_topic(settings.topics.name("scored")), name="watch-scored")
        async def watch_scored(stream: Any) -> None:
            async for batch in batches(stream):
                await handle(pipeline.on_scored, batch)

    if "monitor" in roles and "learn" not in roles:
        @app.agent(raw_topic(settings.topics.name("learned")), name="watch-learned")
        async def watch_learned(stream: Any) -> None:
            async for batch in batches(stream):
                await handle(pipeline.on_learned, batch)

    if "learn" in roles and "monitor" not in roles and settings.drift.auto_challenger:
        @app.agent(raw_topic(pipeline.drift_topic), name="respond")
        async def respond(stream: Any) -> None:
            async for batch in batches(stream):
                await handle(pipeline.on_drift_events, batch)

    if "learn" in roles:
        async def learn_due() -> None:
            assert pipeline.learn is not None
            await emit_from(pipeline.learn.learn_due())

        steer = _labels_steering(app, pipeline, labels.get_topic_name(), learn_due)
        steers.append(("labels flow", steer))

        @app.agent(labels, name="learn")
        async def learn(stream: Any) -> None:
            async for batch in batches(stream):
                await handle(pipeline.on_labels, batch)
                await _guarded("labels flow", pipeline, on_fenced, steer)

        @app.timer(worker.label_retry_seconds)
        async def retry_waiting_labels() -> None:
            await _guarded("waiting labels", pipeline, on_fenced,
                           lambda: emit_from(pipeline.on_waiting()))

    if steers:
        @app.task
        async def steer_flow() -> None:
            """Pause or resume the labels and the transactions as the stream time moves."""
            while not app.should_stop:
                await asyncio.sleep(LABELS_STEER_SECONDS)
                for what, tick in steers:
                    await _guarded(what, pipeline, on_fenced, tick)

    @app.on_partitions_revoked.connect
    async def on_revoked(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        revoked = args[0] if args else kwargs.get("revoked", ())
        if pipeline.learn is not None:  # read again from their committed offsets
            pipeline.learn.flow.forget(tp.partition for tp in revoked
                                       if tp.topic == labels.get_topic_name())
        await _guarded("partitions revoked", pipeline, on_fenced, lambda: emit_from(
            pipeline.on_revoked([(tp.topic, tp.partition) for tp in revoked])))

    @app.task
    async def loop_lag() -> None:
        await watch_loop(pipeline.metrics.loop_lag.observe)

    @app.timer(settings.model.snapshot_every_seconds)
    async def publish_snapshot() -> None:
        await _guarded("snapshot timer", pipeline, on_fenced, pipeline.on_timer)

    return app


async def _guarded(what: str, pipeline: Pipeline, on_fenced: Callable[[str], None],
                   tick: Callable[[], Awaitable[None]]) -> None:
    """Run one timer tick; no exception escapes it (the next tick tries again)."""
    try:
        await tick()
    except FencedError as exc:
        on_fenced(str(exc))
    except Exception as exc:  # Redis or Kafka unavailable, or a bug: logged, retried
        pipeline.metrics.errors.labels(stage="infrastructure").inc()
        log.warning("%s: %r; trying again at the next tick", what, exc)


def _labels_steering(app: faust.App, pipeline: Pipeline, topic: str,
                     learn_due: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
    """Apply the learner's :class:`~stream.runtime.flow.LabelFlow` to the Kafka consumer.

    Partitions are paused in the Kafka client itself (aiokafka, in Faust's consumer
    thread): it stops fetching them and keeps its position, so nothing is skipped
    and a resumed partition goes on from the first record not yet handed over.
    (Faust's own ``pause_partitions`` drops the records of its current fetch; a
    seek to put them back raced with that fetch's delivery.) Records already
    handed to Faust are still delivered: at most ``broker_max_poll_records`` and
    the agent's buffer, which :func:`create_app` keeps small. Parked labels the
    stream has reached are learned here too (``learn_due``), and the frontier is
    published for the scorers.
    """
    assert pipeline.learn is not None
    learn = pipeline.learn

    async def in_client(method: str, tps: set[TopicPartition]) -> None:
        await _in_consumer(app, lambda client: getattr(client, method)(*tps))

    async def steer() -> None:
        flow = learn.flow
        now = await pipeline.stream_time()
        caught_up = flow.stalled(now) and await learn.caught_up()
        before = set(flow.paused)
        pause, resume = flow.decide(now, len(learn.waiting or ()), caught_up)
        try:
            if pause:
                await in_client("pause", {TopicPartition(topic, p) for p in pause})
                pipeline.metrics.labels_pauses.inc(len(pause))
            if resume:
                await in_client("resume", {TopicPartition(topic, p) for p in resume})
        except BaseException:
            flow.paused = before  # decided again at the next tick
            raise
        if pause or resume:
            pipeline.metrics.labels_paused.set(len(flow.paused))
        earliest = None if learn.waiting is None else learn.waiting.earliest()
        if earliest is not None and earliest <= now:  # parked labels the stream reached:
            await learn_due()  # learned now, not at the next retry (the scorers may wait)
        await learn.publish_frontier(now)

    return steer


async def _in_consumer(app: faust.App, call: Callable[[Any], object]) -> None:
    """Run ``call(client)`` on the aiokafka consumer, in Faust's consumer thread."""
    thread = app.consumer._thread  # type: ignore[attr-defined]  # Faust's consumer thread
    client = thread._ensure_consumer()  # the aiokafka consumer it runs

    async def run() -> None:
        call(client)

    await thread.call_thread(run)


def _scoring_steering(app: faust.App, pipeline: Pipeline,
                      topic: str) -> Callable[[], Awaitable[None]]:
    """Hold the transactions partitions of this process while its scorer is too far past
    the labels read (:class:`~stream.runtime.flow.ScoreHold`), paused in the Kafka client
    as the labels are (:func:`_labels_steering`). Partitions assigned while held are held
    too; only the partitions this paused are resumed."""
    assert pipeline.scorer is not None
    scorer = pipeline.scorer
    held: set[TopicPartition] = set()

    def apply(client: Any, hold: bool) -> None:
        if hold:
            new = {tp for tp in client.assignment() if tp.topic == topic} - held
            if new:
                client.pause(*new)
                held.update(new)
        else:
            mine = held & client.assignment()
            if mine:
                client.resume(*mine)
            held.clear()

    async def steer() -> None:
        hold = await scorer.holding()
        if hold or held:
            await _in_consumer(app, lambda client: apply(client, hold))

    return steer


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


async def _with_retries(handle: Callable[[T], Awaitable[R]], records: T,
                        pipeline: Pipeline,
                        on_fenced: Callable[[str], None] = _never_fenced) -> R:
    """Run ``handle`` until it succeeds: infrastructure errors never skip a record.

    Events are acknowledged (their offsets committed) only after this returns.
    A learner whose lease was taken over steps down (``on_fenced``) instead.
    """
    attempt = 0
    while True:
        try:
            return await handle(records)
        except FencedError as exc:
            on_fenced(str(exc))
            await asyncio.sleep(RETRY_BACKOFF[-1])  # stepping down: nothing more is done
        except Exception as exc:
            delay = RETRY_BACKOFF[min(attempt, len(RETRY_BACKOFF) - 1)]
            pipeline.metrics.errors.labels(stage="infrastructure").inc()
            log.warning("%s failed: %r; retrying in %.1fs", _where(records), exc, delay)
            attempt += 1
            await asyncio.sleep(delay)
