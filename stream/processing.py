"""What the worker does with each record, free of any stream framework.

The Faust agents in :mod:`stream.runtime.app` only hand raw records to a
:class:`Pipeline` and send what it returns. So the whole behaviour (decode,
dead-letter, score exactly once, learn from late labels, publish snapshots)
is tested here without Faust, and Faust stays a thin shell.

Errors are sorted in two kinds. A record that cannot be processed (bad
schema, a label for an unknown transaction, a failure of our own code on
that record) goes to the dead-letter topic with its reason and is counted.
A failure of infrastructure (Redis unreachable, no model yet) is raised, so
the agent retries the same record and nothing is skipped.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections import deque
from collections.abc import Sequence
from functools import partial

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from features.events import Transaction
from features.store import FeatureStore, ScoredRecord
from features.vector import FEATURE_SET_VERSION
from models.errors import NoModelError
from models.evaluation import Prequential
from models.factory import fraud_probabilities
from models.following import follow
from models.learner import Learned, Learner, Outcome
from models.registry import ModelRegistry
from models.scoring import ModelHolder, ServingModel, score_batch
from monitoring.detectors import DriftEvent, Scorer
from monitoring.metrics import PipelineMetrics
from monitoring.monitor import DriftMonitor, encode_event
from producers.schema import (
    RecordError,
    ScoreRecord,
    decode_label,
    decode_transaction,
    encode,
    to_datetime,
)
from stream.records import Emit, RawRecord, dead_letter, decode_learned, encode_learned
from stream.response import AutoChallenger
from stream.runtime.roles import ALL
from stream.settings import Settings
from stream.waiting import Progress, Waiting, WaitingLabels

log = logging.getLogger(__name__)

#: Waiting labels are learned this many at a time (a few Redis round trips each).
LEARN_BATCH = 500

#: Raise each partition's stream time in a hash (KEYS[1]) to the given value, never lower it.
_RAISE_STREAM_TIME = """
for i = 1, #ARGV, 2 do
  local old = redis.call('HGET', KEYS[1], ARGV[i])
  if not old or tonumber(old) < tonumber(ARGV[i + 1]) then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
return 1
"""


class Pipeline:
    """Scores transactions, learns from labels and watches drift: the ``roles`` of one
    worker process (all three by default).

    What one role hands another in the same process goes directly; to a role in
    another process it goes through Kafka (scored vectors on ``scored``, learned
    labels on ``learned``, for the monitor) or Redis (the stream time each
    scorer reached, for the learner; models, for everyone).
    """

    def __init__(
        self, settings: Settings, store: FeatureStore, registry: ModelRegistry,
        metrics: PipelineMetrics, monitor: DriftMonitor | None = None,
        progress: Progress | None = None, roles: frozenset[str] = ALL,
    ) -> None:
        self.settings = settings
        self.roles = roles
        self.store = store
        self.registry = registry
        self.metrics = metrics
        self.holder = ModelHolder()
        self.learner: Learner | None = None
        #: Challengers: their learners and the snapshots they score with in shadow.
        self.challengers: dict[str, Learner] = {}
        self.shadows: dict[str, ModelHolder] = {
            name: ModelHolder() for name in settings.model.challengers}
        self._start_lock = asyncio.Lock()
        #: Learning and publishing never interleave: the learner is the single writer.
        self._learn_lock = asyncio.Lock()
        topics = settings.topics
        self._newest = 0.0
        self.scores_topic = topics.name("scores")
        self.dead_letter_topic = topics.name("dead_letters")
        self.drift_topic = topics.name("drift_events")
        self.scored_topic = topics.name("scored")
        self.learned_topic = topics.name("learned")
        #: Newest event time scored per partition, for a learner in another process.
        self._newest_by_partition: dict[int, float] = {}
        self._stream_key = f"{settings.redis.key_prefix}:stream:time"
        self._raise_stream_time = registry.client.register_script(_RAISE_STREAM_TIME)
        #: Operator changes of the champion seen (a separate monitor refreshes on one).
        self._audits: int | None = None
        #: A separate monitor's memory of the transactions it saw (scorers may resend).
        self._seen = RecentIds(SEEN_KEPT)
        #: Whether scored vectors and learned labels go through Kafka to a monitor elsewhere.
        self._monitor_elsewhere = settings.drift.enabled and "monitor" not in roles
        #: Drift detectors (None: not watched).
        self.monitor = monitor
        self.auto = AutoChallenger(self)
        self._refresh_seen: object = _UNSEEN
        #: Event time of the feature state's first transaction (for the drift warm-up).
        self._state_key = f"{settings.redis.key_prefix}:v{FEATURE_SET_VERSION}:state:began"
        self._state_start: float | None = None
        self._scoring: Scorer | None = None
        #: Labels that came before their transaction wait when the group's
        #: progress can be read; without it they are dead-lettered at once.
        self.progress = progress
        self.waiting = None if progress is None or "learn" not in roles else WaitingLabels(
            registry.client, f"{settings.redis.key_prefix}:labels:waiting")

    async def start(self) -> Learner | None:
        """Resume the learner and load the published model (once); without the learn
        role, load the published models to follow them."""
        if self.learner is not None:  # the hot path: already started, no lock needed
            return self.learner
        async with self._start_lock:
            if self.learner is None and "learn" not in self.roles:
                await self._start_following()
                return None
            if self.learner is None:
                self.learner = await Learner.start(
                    self.registry, self.store, self.settings.model.name,
                    self.settings.model.snapshot_every_labels, quality=self._quality(),
                )
                meta, model = await self.registry.load()
                self._serve(ServingModel(meta.version, model))
                if self.monitor is not None:
                    self.monitor.model_learned(self.learner.labels_learned)
                    began = await self.registry.client.get(self._state_key)
                    if began is not None:
                        self._state_start = float(began)
                        self.monitor.state_began(self._state_start)
                if self.waiting is not None:
                    await self.waiting.load()
                    self.metrics.labels_waiting.set(len(self.waiting))
                for name in self.settings.model.challengers:
                    challenger = await Learner.start(
                        self.registry.challenger(name), self.store, name,
                        self.settings.model.snapshot_every_labels, shadow_name=name,
                        quality=self._quality())
                    self.challengers[name] = challenger
                    self.shadows[name].swap(ServingModel(challenger.meta.version,
                                                         copy.deepcopy(challenger.model)))
            return self.learner

    async def _start_following(self) -> None:
        """Without the learn role: serve the champion and the challengers read-only."""
        if self.holder.current is None:
            await self._follow()
            await self._read_state_start()

    async def _read_state_start(self) -> None:
        """A monitor in its own process learns when the feature state began from Redis."""
        if self.monitor is None or self._state_start is not None:
            return
        began = await self.registry.client.get(self._state_key)
        if began is not None:
            self._state_start = float(began)
            self.monitor.state_began(self._state_start)

    async def _follow(self) -> None:
        """Load a new champion or challenger snapshot if one was published (the learner,
        or an operator's promote or rollback)."""
        meta = await follow(self.registry, self.holder)
        if meta is not None:
            self.metrics.model_version.set(meta.version)
        if self.monitor is not None:
            if meta is not None:
                self.monitor.model_learned(meta.labels_learned)
            audits = await self.registry.audit_length()
            if self._audits is not None and audits != self._audits:
                self.monitor.refresh_reference()  # promoted or rolled back: its own traffic
            self._audits = audits
        for name, shadow in self.shadows.items():
            try:
                await follow(self.registry.challenger(name), shadow)
            except NoModelError:  # the learner has not started this challenger yet
                continue

    async def on_transaction(self, record: RawRecord) -> list[Emit]:
        """Score one raw transaction record."""
        return await self.on_transactions([record])

    async def on_transactions(self, records: Sequence[RawRecord]) -> list[Emit]:
        """Score a batch of raw transaction records, in order."""
        self.metrics.events_in.labels(topic="transactions").inc(len(records))
        await self.start()
        started = time.perf_counter()
        out: list[Emit] = []
        decoded: list[tuple[RawRecord, Transaction]] = []
        for record in records:
            try:
                decoded.append((record, decode_transaction(record.value or b"")))
            except RecordError as exc:
                out.append(self._reject(record, "transactions", "invalid_record", str(exc)))
        if decoded:
            if self.monitor is not None and self._state_start is None:
                await self._state_began(min(txn.event_time for _, txn in decoded))
            out.extend(await self._score(decoded))
        self.metrics.latency.labels(stage="score").observe(time.perf_counter() - started)
        if self._newest:
            self.metrics.newest_event.set(self._newest)
        return out

    async def _score(self, decoded: Sequence[tuple[RawRecord, Transaction]]) -> list[Emit]:
        try:
            results = await score_batch(self.store, self.holder, [txn for _, txn in decoded],
                                        self.shadows)
        except Exception as exc:
            if _is_infrastructure(exc):
                raise
            if len(decoded) > 1:  # find the culprit: the others are applied once anyway
                return [emit for one in decoded for emit in await self._score([one])]
            record, txn = decoded[0]
            log.exception("scoring failed for txn %s", txn.txn_id)
            self.metrics.errors.labels(stage="score").inc()
            return [self._reject(record, "transactions", "processing_error", repr(exc))]
        out = []
        watched: list[tuple[ScoredRecord, tuple[str, int], bool]] = []
        for (record, txn), result in zip(decoded, results, strict=True):
            if result.record is None:
                out.append(self._reject(record, "transactions", "too_late",
                                        self._lateness_detail(txn, result.newest)))
                continue
            if self.waiting:
                self.waiting.scored(txn.txn_id)
            if result.duplicate:
                self.metrics.duplicates.labels(topic="transactions").inc()
                if self._monitor_elsewhere:  # it may not have reached the monitor: it dedups
                    out.append(Emit(self.scored_topic, txn.card_id.encode(),
                                    result.record.to_bytes()))
            else:
                self._newest = max(self._newest, txn.event_time)
                partition = record.partition
                self._newest_by_partition[partition] = max(
                    self._newest_by_partition.get(partition, 0.0), txn.event_time)
                watched.append((result.record, (record.topic, record.partition), record.behind))
            self.metrics.scores_out.inc()
            out.append(Emit(self.scores_topic, txn.card_id.encode(), _score_value(result.record)))
        if self._newest:  # recorded in their snapshots
            for learner in [*([self.learner] if self.learner else []),
                            *self.challengers.values()]:
                learner.stream_time = self._newest
        if self.monitor is not None and watched:
            out += self._drift(self.monitor.on_scored_batch(watched, self._scorer()))
        elif self._monitor_elsewhere:  # it gets the vectors through Kafka
            out += [Emit(self.scored_topic, r.card_id.encode(), r.to_bytes())
                    for r, _, _ in watched]
        return out

    async def on_scored(self, records: Sequence[RawRecord]) -> list[Emit]:
        """The monitor role: scored records (with their vectors) from scorers elsewhere."""
        self.metrics.events_in.labels(topic="scored").inc(len(records))
        if self.monitor is None:
            return []
        await self.start()
        out: list[Emit] = []
        watched = []
        for record in records:
            try:
                scored = ScoredRecord.from_bytes(record.value or b"")
            except Exception as exc:  # struct.error, IndexError, UnicodeDecodeError
                out.append(self._reject(record, "scored", "invalid_record", repr(exc)))
                continue
            if self._seen.add(scored.txn_id):  # a scorer's redelivery: seen once already
                watched.append((scored, (record.topic, record.partition), record.behind))
            else:
                self.metrics.duplicates.labels(topic="scored").inc()
        return out + self._drift(self.monitor.on_scored_batch(watched, self._scorer()))

    async def on_learned(self, records: Sequence[RawRecord]) -> list[Emit]:
        """The monitor role: labels the learner elsewhere learned, with their records."""
        self.metrics.events_in.labels(topic="learned").inc(len(records))
        if self.monitor is None:
            return []
        await self.start()
        out: list[Emit] = []
        for record in records:
            try:
                scored, label, learned = decode_learned(record.value or b"")
            except Exception as exc:  # struct.error, IndexError, UnicodeDecodeError
                out.append(self._reject(record, "learned", "invalid_record", repr(exc)))
                continue
            self.monitor.model_learned(learned)
            out += self._drift(self.monitor.on_label(scored, label,
                                                     (record.topic, record.partition),
                                                     record.behind))
        return out

    async def _state_began(self, event_time: float) -> None:
        """Record when the feature state began (the first writer wins) and tell the monitor."""
        client = self.registry.client
        await client.set(self._state_key, repr(event_time), nx=True)
        stored = await client.get(self._state_key)
        self._state_start = event_time if stored is None else float(stored)
        if self.monitor is not None:
            self.monitor.state_began(self._state_start)

    def _scorer(self) -> Scorer | None:
        """The serving model's scorer, for prediction drift (one per model version)."""
        serving = self.holder.current
        if serving is None:
            return None
        if self._scoring is None or self._scoring.key != serving.version:
            self._scoring = Scorer(serving.version, partial(fraud_probabilities, serving.model))
        return self._scoring

    def _drift(self, events: list[DriftEvent]) -> list[Emit]:
        pipeline = self.settings.worker.app_id
        for event in events:
            log.warning("drift in %s: %s on %s = %.4g (first seen at event time %.0f)",
                        pipeline, event.detector, event.subject, event.magnitude,
                        event.first_seen)
        return [Emit(self.drift_topic, e.detector.encode(), encode_event(e, pipeline))
                for e in events]

    def _lateness_detail(self, txn: Transaction, newest: float | None) -> str:
        behind = 0.0 if newest is None else newest - txn.event_time
        allowed = self.settings.features.allowed_lateness_seconds
        return (f"event_time: {behind:.3f}s before card {txn.card_id!r}'s newest event, "
                f"more than the allowed lateness of {allowed:g}s")

    async def on_label(self, record: RawRecord) -> list[Emit]:
        """Teach the model one raw label record (or keep it until the stream reaches it)."""
        return await self.on_labels([record])

    async def on_labels(self, records: Sequence[RawRecord]) -> list[Emit]:
        """Teach the model a batch of raw label records, in order, in a few round trips
        (or keep each until the stream reaches it)."""
        self.metrics.events_in.labels(topic="labels").inc(len(records))
        await self.start()
        out: list[Emit] = []
        items: list[Waiting] = []
        for record in records:
            try:
                items.append(Waiting(record, decode_label(record.value or b"")))
            except RecordError as exc:
                out.append(self._reject(record, "labels", "invalid_record", str(exc)))
        return out + await self._learn(items)

    async def on_waiting(self) -> list[Emit]:
        """Learn the waiting labels the stream has reached and whose transaction was
        scored; when the group got past a label's bound, learn it or dead-letter it
        (see :mod:`stream.waiting`)."""
        if not self.waiting or self.progress is None:
            return []
        await self.start()
        out = await self._learn_parked(self.waiting.take_ready(await self._stream_time()))
        if self.waiting:
            committed, ends = await asyncio.to_thread(self.progress.read)
            await self.waiting.bound(ends)
            out += await self._learn_parked(self.waiting.given_up(committed), last_chance=True)
        self.metrics.labels_waiting.set(len(self.waiting))
        return out

    async def _learn_parked(self, items: Sequence[Waiting],
                            last_chance: bool = False) -> list[Emit]:
        """Learn waiting labels, ``LEARN_BATCH`` at a time."""
        out = []
        for start in range(0, len(items), LEARN_BATCH):
            out += await self._learn(items[start:start + LEARN_BATCH], parked=True,
                                     last_chance=last_chance)
        return out

    async def _learn(self, items: Sequence[Waiting], parked: bool = False,
                     last_chance: bool = False) -> list[Emit]:
        """Learn ``items`` in order; a label the stream has not reached, or whose
        transaction is not scored yet, waits (see :mod:`stream.waiting`)."""
        learner = await self.start()
        if learner is None:
            raise RuntimeError("labels reached a process without the learn role")
        if self.waiting is not None and not parked:
            # A label that overtook the stream is not known yet in event time.
            now = await self._stream_time()
            ahead = [i for i in items if not i.due(now)]
            if ahead:
                await self._park(ahead)
                items = [i for i in items if i.due(now)]
        if not items:
            return []
        started = time.perf_counter()
        async with self._learn_lock:
            results = await learner.learn_many([item.label for item in items])
            known = [item.label for item, result in zip(items, results, strict=True)
                     if result.outcome is not Outcome.UNKNOWN_TRANSACTION]
            for name, challenger in self.challengers.items():
                for shadow in await challenger.learn_many(known):
                    if shadow.published is not None:
                        self.shadows[name].swap(shadow.published)
        self.metrics.latency.labels(stage="learn").observe(time.perf_counter() - started)
        out: list[Emit] = []
        done: list[Waiting] = []
        early: list[Waiting] = []
        for item, result in zip(items, results, strict=True):
            if result.outcome is Outcome.UNKNOWN_TRANSACTION and self.waiting is not None \
                    and not last_chance:
                if not parked:
                    early.append(item)  # it overtook its transaction: it waits for it
                continue
            done.append(item)
            out += await self._learned(item, result, learner, parked)
        await self._park(early)
        if parked and self.waiting is not None and done:
            await self.waiting.forget_many(done)
        return out

    async def _learned(self, item: Waiting, result: Learned, learner: Learner,
                       parked: bool) -> list[Emit]:
        """Count one label's outcome and show a learned one to the drift detectors."""
        label = item.label
        if result.outcome is Outcome.UNKNOWN_TRANSACTION:
            detail = f"txn_id: no scored transaction {label.txn_id!r} (unknown or expired)"
            return [self._reject(item.record, "labels", result.outcome.value, detail)]
        if result.outcome is Outcome.DUPLICATE:
            self.metrics.duplicates.labels(topic="labels").inc()
        else:
            self.metrics.labels_learned.inc()
            self.metrics.quality.label_delay.observe(result.delay)
        if result.published is not None:
            self._serve(result.published)
        if result.outcome is Outcome.LEARNED and result.record is not None:
            self.auto.remember(result.record, label)
            if self._monitor_elsewhere:
                return [Emit(self.learned_topic, label.txn_id.encode(),
                             encode_learned(result.record, label, learner.labels_learned))]
            if self.monitor is not None:
                self.monitor.model_learned(learner.labels_learned)
                source = None if parked else (item.record.topic, item.record.partition)
                events = self.monitor.on_label(result.record, label, source,
                                               item.record.behind and not parked)
                await self.auto.on_events(events)
                return self._drift(events)
        return []

    async def _stream_time(self) -> float:
        """The newest event time scored: this process's, or, without the score role, the
        newest any scorer reported (:meth:`report_stream_time`)."""
        if "score" in self.roles:
            return self._newest
        reported: list[bytes | str] = await self.registry.client.hvals(self._stream_key)
        self._newest = max([self._newest, *(float(v) for v in reported)])
        for learner in [*([self.learner] if self.learner else []), *self.challengers.values()]:
            learner.stream_time = self._newest
        return self._newest

    async def report_stream_time(self) -> None:
        """Tell a learner in another process how far this scorer got, per partition (each
        partition's newest event time only grows: a stale owner cannot move it back)."""
        if not self._newest_by_partition or "learn" in self.roles:
            return
        await self._raise_stream_time(keys=[self._stream_key], args=[
            x for partition, newest in self._newest_by_partition.items()
            for x in (partition, repr(newest))])

    async def _park(self, items: Sequence[Waiting]) -> None:
        if self.waiting is None or not items:
            return
        await self.waiting.park_many(items)
        self.metrics.labels_waiting.set(len(self.waiting))

    def labels_backlog(self, held: bool) -> bool:
        """Whether the worker should take no more labels: too many wait.

        Held at ``worker.labels_waiting_max`` and, once ``held``, until fewer
        than half of it wait: a replay whose labels run far ahead of its
        transactions keeps them in Kafka rather than in memory.
        """
        if self.waiting is None:
            return False
        limit = self.settings.worker.labels_waiting_max
        return len(self.waiting) >= (limit // 2 if held else limit)

    async def on_revoked(self, partitions: Sequence[tuple[str, int]]) -> list[Emit]:
        """The worker no longer reads ``partitions`` (topic, partition): the drift
        detectors stop waiting for them."""
        if self.monitor is None:
            return []
        events = self.monitor.forget(partitions)
        await self.auto.on_events(events)
        return self._drift(events)

    async def on_timer(self) -> None:
        """Publish a snapshot if anything was learned since the last one; follow the
        champion if an operator promoted or rolled back; report the store's health."""
        health = getattr(self.store, "health", None)
        if health is not None:
            memory, keys = await health()
            self.metrics.redis_memory.set(memory)
            self.metrics.redis_keys.set(keys)
        await self._refresh_on_request()
        if "learn" not in self.roles:
            if self.holder.current is not None:
                await self._follow()
            await self.start()
            await self._read_state_start()
            await self.report_stream_time()
            return
        if self.learner is None:
            return
        async with self._learn_lock:
            published = await self.learner.publish_if_changed()
            if published is None and await self.learner.follow_champion():
                published = ServingModel(self.learner.meta.version,
                                         copy.deepcopy(self.learner.model))
                if self.monitor is not None:  # a new champion: compare against its traffic
                    self.monitor.refresh_reference()
        if published is not None:
            self._serve(published)
        async with self._learn_lock:
            for name, challenger in list(self.challengers.items()):
                shadow = await challenger.publish_if_changed()
                if shadow is not None:
                    self.shadows[name].swap(shadow)
        await self.auto.on_timer()
        for role, one in [("champion", self.learner),
                          *((f"challenger:{n}", c) for n, c in list(self.challengers.items()))]:
            if len(one.quality):
                self.metrics.quality.export(role, one.meta.model_name, one.meta.version,
                                            one.quality.report())

    async def _refresh_on_request(self) -> None:
        """Take new drift references when an operator asked (``fraudstream drift-refresh``)."""
        if self.monitor is None:
            return
        asked = await self.registry.client.get(drift_refresh_key(self.settings))
        if self._refresh_seen is _UNSEEN:  # a request from before this worker started is old
            self._refresh_seen = asked
        elif asked is not None and asked != self._refresh_seen:
            self.monitor.refresh_reference()
            log.warning("drift references refreshed on request")
            self._refresh_seen = asked

    def _quality(self) -> Prequential:
        model = self.settings.model
        return Prequential(threshold=model.threshold, cost_missed_fraud=model.cost_missed_fraud,
                           cost_false_alarm=model.cost_false_alarm)

    def _serve(self, serving: ServingModel) -> None:
        self.holder.swap(serving)
        self.metrics.model_version.set(serving.version)

    def _reject(self, record: RawRecord, topic: str, reason: str, detail: str) -> Emit:
        self.metrics.dead_letters.labels(topic=topic, reason=reason).inc()
        log.warning("dead-lettered %s[%d]@%d: %s: %s",
                    record.topic, record.partition, record.offset, reason, detail)
        return dead_letter(record, self.dead_letter_topic, reason, detail)


_UNSEEN = object()

#: How many transaction ids a separate monitor remembers to drop resent scored records.
SEEN_KEPT = 1_000_000


class RecentIds:
    """The last ``size`` ids added, to recognise a repeat.

    >>> seen = RecentIds(2)
    >>> seen.add("a"), seen.add("a"), seen.add("b"), seen.add("c"), seen.add("a")
    (True, False, True, True, True)
    """

    def __init__(self, size: int) -> None:
        self._order: deque[str] = deque(maxlen=size)
        self._ids: set[str] = set()

    def add(self, item: str) -> bool:
        """Remember ``item``; whether it is new."""
        if item in self._ids:
            return False
        if len(self._order) == self._order.maxlen:
            self._ids.discard(self._order[0])
        self._order.append(item)
        self._ids.add(item)
        return True


def drift_refresh_key(settings: Settings) -> str:
    """The Redis key an operator sets to make every worker take new drift references."""
    return f"{settings.redis.key_prefix}:drift:refresh"


def _score_value(scored: ScoredRecord) -> bytes:
    return encode(ScoreRecord(
        txn_id=scored.txn_id,
        card_id=scored.card_id,
        score=scored.score,
        model_version=scored.model_version,
        event_time=to_datetime(scored.event_time),
    ))


def _is_infrastructure(exc: BaseException) -> bool:
    return isinstance(exc, RedisConnectionError | RedisTimeoutError | NoModelError | OSError)
