"""The learn role: late labels in, the champion and challengers taught, snapshots out.

One learner is active at a time (its registry writes only while its fence
holds, :mod:`stream.runtime.lease`). A label is learned from the vector its
transaction was scored with, once the stream has reached the label's
arrival time; until then it waits (:mod:`stream.runtime.waiting`). Who learns from
the labels next (the drift monitor, in this process or another) is the
caller's ``learned`` hook.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from features.events import Label
from features.store import FeatureStore, ScoredRecord
from models.challengers import Challengers
from models.evaluation import Prequential
from models.learner import Learned, Learner, Outcome
from models.registry import ModelRegistry
from models.scoring import ServingModel
from monitoring.metrics import PipelineMetrics
from producers.schema import RecordError, decode_label
from stream.runtime.flow import FRONTIER_TTL_MS, LabelFlow, frontier_key
from stream.runtime.records import Emit, RawRecord, Rejects
from stream.runtime.response import AutoChallenger
from stream.runtime.waiting import GroupProgress, Waiting, WaitingLabels
from stream.settings import Settings

log = logging.getLogger(__name__)

#: Waiting labels are learned this many at a time (a few Redis round trips each).
LEARN_BATCH = 500
#: Told of each label learned: its consumed record (None once it waited), the record its
#: transaction was scored with, the label, the lineage's label count, and whether it had
#: been learned before (a redelivery: it may not have reached its reader); returns records.
LearnedHook = Callable[[RawRecord | None, ScoredRecord, Label, int, bool], Awaitable[list[Emit]]]


async def _nobody(
    record: RawRecord | None, scored: ScoredRecord, label: Label, learned: int, again: bool
) -> list[Emit]:
    return []


class LearnRole:
    """Teaches the champion and the challengers from label records."""

    def __init__(
        self,
        settings: Settings,
        store: FeatureStore,
        registry: ModelRegistry,
        metrics: PipelineMetrics,
        challengers: Challengers,
        rejects: Rejects,
        stream_time: Callable[[], Awaitable[float]],
        serve: Callable[[ServingModel], None],
        progress: GroupProgress | None = None,
        learned: LearnedHook = _nobody,
    ) -> None:
        self.settings = settings
        self.store = store
        self.registry = registry
        self.metrics = metrics
        self.challengers = challengers
        self.rejects = rejects
        #: The newest event time the scorers reached (labels after it wait).
        self.stream_time = stream_time
        #: Hands a newly published champion to whoever scores with it here.
        self.serve = serve
        self.learned = learned
        self.learner: Learner | None = None
        self._start_lock = asyncio.Lock()
        self.auto = AutoChallenger(settings, registry, store, challengers)
        #: Labels that came before the stream wait when the scorers' progress can be
        #: read; without it they are dead-lettered at once.
        self.progress = progress
        self.waiting = (
            None
            if progress is None
            else WaitingLabels(registry.client, f"{settings.redis.key_prefix}:labels:waiting")
        )
        #: Which labels partitions to read (applied to the consumer by the app).
        self.flow = LabelFlow(
            settings.worker.labels_lead_seconds, settings.worker.labels_waiting_max
        )
        self._frontier_set = False
        #: Forget learned waiting labels in Redis only once what they produced is delivered
        #: (:meth:`forget_delivered`, called by the app after sending): a learner killed in
        #: between leaves them waiting, and its successor learns them as repeats and sends
        #: their learned records again. Off, they are forgotten at once (no Kafka here).
        self.forget_after_delivery = False
        self._undelivered: list[Waiting] = []

    async def start(self) -> Learner:
        """Resume the champion's and the challengers' learners (once), and pick up the
        labels left waiting by an earlier learner."""
        if self.learner is not None:  # the hot path: already started, no lock needed
            return self.learner
        async with self._start_lock:
            if self.learner is None:
                model = self.settings.model
                learner = await Learner.start(
                    self.registry,
                    self.store,
                    model.name,
                    model.snapshot_every_labels,
                    quality=self._quality(),
                    snapshot_min_seconds=model.snapshot_min_seconds,
                )
                meta, served = await self.registry.load(learner.meta.version)
                self.serve(ServingModel(meta.version, served))
                if self.waiting is not None:
                    await self.waiting.load()
                    self.metrics.labels_waiting.set(len(self.waiting))
                await self.challengers.start(
                    self.registry,
                    self.store,
                    model.challengers,
                    lambda name: name,
                    model.snapshot_every_labels,
                    self._quality,
                    model.snapshot_min_seconds,
                )
                self.learner = learner
            return self.learner

    async def on_labels(self, records: Sequence[RawRecord]) -> list[Emit]:
        """Teach the models a batch of raw label records, in order, in a few round trips
        (or keep each until the stream reaches it)."""
        self.metrics.events_in.labels(topic="labels").inc(len(records))
        await self.start()
        out: list[Emit] = []
        items: list[Waiting] = []
        for record in records:
            try:
                item = Waiting(record, decode_label(record.value or b""))
            except RecordError as exc:
                out.append(self.rejects(record, "labels", "invalid_record", str(exc)))
                continue
            items.append(item)
            self.flow.consumed(record.partition, item.label.event_time, record.behind)
        return out + await self._learn(items)

    async def on_waiting(self) -> list[Emit]:
        """Learn the waiting labels the stream has reached and whose transaction was
        scored; when the scorers got past a label's bound, learn it or dead-letter it
        (see :mod:`stream.runtime.waiting`)."""
        if self.waiting is None or self.progress is None:
            return []
        await self.start()
        if await self.waiting.refresh():
            log.warning("picked up labels another learner left waiting")
        if not self.waiting:
            return []
        out = await self.learn_due()
        if self.waiting:
            committed, ends = await asyncio.to_thread(self.progress.read)
            await self.waiting.bound(ends)
            out += await self._learn_parked(self.waiting.given_up(committed), last_chance=True)
        self.metrics.labels_waiting.set(len(self.waiting))
        return out

    async def learn_due(self) -> list[Emit]:
        """Learn the waiting labels the stream has reached (or whose transaction was scored
        since), without asking Kafka how far the scorers are."""
        if not self.waiting:
            return []
        await self.start()
        out = await self._learn_parked(self.waiting.take_ready(await self._now()))
        self.metrics.labels_waiting.set(len(self.waiting))
        return out

    def frontier(self, stream_time: float) -> float | None:
        """How far in event time the models have learned every label there is to learn:
        :meth:`~stream.runtime.flow.LabelFlow.frontier`, or earlier a waiting label the
        stream has reached but not tried yet. None: no label is left behind (or the labels
        wait for the scorers)."""
        read = self.flow.frontier()
        if self.flow.holding_all:
            return None
        earliest = None if self.waiting is None else self.waiting.earliest()
        if earliest is not None and earliest > stream_time:
            earliest = None  # learned once the stream reaches it: nothing left behind
        times = [t for t in (read, earliest) if t is not None]
        return min(times) if times else None

    async def publish_frontier(self, stream_time: float) -> None:
        """Tell the scorers how far the labels have been read (:mod:`stream.runtime.flow`):
        they hold their transactions while they are more than
        ``worker.scoring_lead_seconds`` past it. Written at every steer of the flow, it
        expires if this learner stops."""
        frontier = self.frontier(stream_time)
        key = frontier_key(self.settings.redis.key_prefix)
        if frontier is None:
            if self._frontier_set:
                await self.registry.client.delete(key)
                self._frontier_set = False
            return
        await self.registry.client.set(key, repr(frontier), px=FRONTIER_TTL_MS)
        self._frontier_set = True

    async def caught_up(self) -> bool:
        """Whether the scorers' group has committed every transaction in Kafka."""
        if self.progress is None:
            return False
        committed, ends = await asyncio.to_thread(self.progress.read)
        return bool(ends) and all(committed.get(p, 0) >= end for p, end in ends.items())

    def scored(self, txn_ids: Sequence[str]) -> None:
        """The scorer in this process scored ``txn_ids``: their waiting labels are ready."""
        if self.waiting:
            for txn_id in txn_ids:
                self.waiting.scored(txn_id)

    async def _now(self) -> float:
        """The stream time, also recorded in the snapshots."""
        now = await self.stream_time()
        if now:
            if self.learner is not None:
                self.learner.stream_time = now
            self.challengers.set_stream_time(now)
        return now

    async def _learn_parked(
        self, items: Sequence[Waiting], last_chance: bool = False
    ) -> list[Emit]:
        """Learn waiting labels, ``LEARN_BATCH`` at a time."""
        out = []
        for start in range(0, len(items), LEARN_BATCH):
            out += await self._learn(
                items[start : start + LEARN_BATCH], parked=True, last_chance=last_chance
            )
        return out

    async def _learn(
        self, items: Sequence[Waiting], parked: bool = False, last_chance: bool = False
    ) -> list[Emit]:
        """Learn ``items`` in order; a label the stream has not reached, or whose
        transaction is not scored yet, waits (see :mod:`stream.runtime.waiting`)."""
        learner = await self.start()
        now = await self._now()
        if self.waiting is not None and not parked:
            # A label that overtook the stream is not known yet in event time.
            ahead = [i for i in items if not i.due(now)]
            if ahead:
                await self._park(ahead)
                items = [i for i in items if i.due(now)]
        if not items:
            return []
        started = time.perf_counter()
        async with self.challengers.lock:
            results = await learner.learn_many([item.label for item in items])
            await self.challengers.learn_many(
                [
                    item.label
                    for item, result in zip(items, results, strict=True)
                    if result.outcome is not Outcome.UNKNOWN_TRANSACTION
                ]
            )
        self.metrics.latency.labels(stage="learn").observe(time.perf_counter() - started)
        out: list[Emit] = []
        done: list[Waiting] = []
        early: list[Waiting] = []
        for item, result in zip(items, results, strict=True):
            if (
                result.outcome is Outcome.UNKNOWN_TRANSACTION
                and self.waiting is not None
                and not last_chance
            ):
                if not parked:
                    early.append(item)  # it overtook its transaction: it waits for it
                continue
            done.append(item)
            out += await self._count(item, result, learner, parked)
        await self._park(early)
        if parked and self.waiting is not None and done:
            if self.forget_after_delivery:
                self.waiting.drop(done)
                self._undelivered += done
            else:
                await self.waiting.forget_many(done)
        return out

    def keep_undelivered(self) -> None:
        """What was learned since the last :meth:`forget_delivered` was not sent: keep those
        labels waiting (tried again, they are repeats and send their records again)."""
        if self.waiting is not None and self._undelivered:
            self.waiting.restore(self._undelivered)
            self._undelivered = []

    async def forget_delivered(self) -> None:
        """Forget in Redis the waiting labels learned since the last call: what they
        produced has been delivered (see ``forget_after_delivery``)."""
        if self.waiting is not None and self._undelivered:
            done, self._undelivered = self._undelivered, []
            await self.waiting.forget_many(done)

    async def _count(
        self, item: Waiting, result: Learned, learner: Learner, parked: bool
    ) -> list[Emit]:
        """Count one label's outcome and hand a learned one on."""
        label = item.label
        if result.outcome is Outcome.UNKNOWN_TRANSACTION:
            detail = f"txn_id: no scored transaction {label.txn_id!r} (unknown or expired)"
            return [self.rejects(item.record, "labels", result.outcome.value, detail)]
        if result.outcome is Outcome.DUPLICATE:
            self.metrics.duplicates.labels(topic="labels").inc()
            if result.record is not None:
                return await self.learned(
                    None if parked else item.record,
                    result.record,
                    label,
                    learner.labels_learned,
                    True,
                )
        else:
            self.metrics.labels_learned.inc()
            self.metrics.quality.label_delay.observe(result.delay)
        if result.published is not None:
            self.serve(result.published)
        if result.outcome is Outcome.LEARNED and result.record is not None:
            self.auto.remember(result.record, label)
            return await self.learned(
                None if parked else item.record, result.record, label, learner.labels_learned, False
            )
        return []

    async def _park(self, items: Sequence[Waiting]) -> None:
        if self.waiting is None or not items:
            return
        await self.waiting.park_many(items)
        self.metrics.labels_waiting.set(len(self.waiting))

    async def on_timer(self) -> bool:
        """Publish the models that learned since their last snapshot; follow the champion
        if an operator promoted or rolled back (returns whether one did); promote a
        challenger that is clearly better; export the models' quality."""
        if self.learner is None:
            return False
        learner = self.learner
        changed = False
        async with self.challengers.lock:
            published = await learner.publish_if_changed()
            if published is None and await learner.follow_champion():
                published = ServingModel(learner.meta.version, copy.deepcopy(learner.model))
                changed = True
        if published is not None:
            self.serve(published)
        await self.challengers.publish_if_changed()
        await self.auto.on_timer()
        for role, one in [
            ("champion", learner),
            *((f"challenger:{n}", c) for n, c in list(self.challengers.learners.items())),
        ]:
            if len(one.quality):
                self.metrics.quality.export(
                    role, one.meta.model_name, one.meta.version, one.quality.recent_report()
                )
        return changed

    def _quality(self) -> Prequential:
        model = self.settings.model
        return Prequential(
            threshold=model.threshold,
            cost_missed_fraud=model.cost_missed_fraud,
            cost_false_alarm=model.cost_false_alarm,
        )
