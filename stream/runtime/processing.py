"""What a worker process does with each record, free of any stream framework.

The Faust agents in :mod:`stream.runtime.app` only hand raw records to a
:class:`Pipeline` and send what it returns. So the whole behaviour (decode,
dead-letter, score exactly once, learn from late labels, publish snapshots,
watch drift) is tested here without Faust, and Faust stays a thin shell.

A pipeline runs the process's roles, each an object that owns its state
(:class:`~stream.runtime.scorer.ScoreRole`,
:class:`~stream.runtime.learner.LearnRole`,
:class:`~stream.runtime.monitor.MonitorRole`), and links them: in one
process directly; across processes through Kafka (scored vectors on
``scored``, learned labels on ``learned``, drift events on
``drift-events``) and Redis (models, the scorers' stream time).

Errors are sorted in two kinds. A record that cannot be processed (bad
schema, a label for an unknown transaction, a failure of our own code on
that record) goes to the dead-letter topic with its reason and is counted.
A failure of infrastructure (Redis unreachable, no model yet) is raised, so
the agent retries the same record and nothing is skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from features.events import Label
from features.store import FeatureStore, ScoredRecord
from models.challengers import Challengers
from models.learner import Learner
from models.registry import ModelRegistry
from models.scoring import ModelHolder, ServingModel
from monitoring.drift.base import DriftEvent
from monitoring.metrics import PipelineMetrics
from monitoring.monitor import DriftMonitor
from stream.runtime.learner import LearnRole
from stream.runtime.marks import RaisedMarks
from stream.runtime.monitor import MonitorRole, decode_drift
from stream.runtime.records import Emit, Origin, RawRecord, Rejects, encode_learned, encode_scored
from stream.runtime.roles import ALL
from stream.runtime.scorer import ScoreRole, stream_time_key
from stream.runtime.waiting import GroupProgress, WaitingLabels
from stream.settings import Settings

log = logging.getLogger(__name__)

#: A drift event seen this long before the stream time is not acted upon any more.
STALE_DRIFT_SECONDS = 86_400.0


class Pipeline:
    """The ``roles`` of one worker process (all three by default), linked."""

    def __init__(
        self,
        settings: Settings,
        store: FeatureStore,
        registry: ModelRegistry,
        metrics: PipelineMetrics,
        monitor: DriftMonitor | None = None,
        progress: GroupProgress | None = None,
        roles: frozenset[str] = ALL,
    ) -> None:
        self.settings = settings
        self.store = store
        self.registry = registry
        self.metrics = metrics
        self.roles = roles
        topics = settings.topics
        self.scores_topic = topics.name("scores")
        self.dead_letter_topic = topics.name("dead_letters")
        self.drift_topic = topics.name("drift_events")
        self.scored_topic = topics.name("scored")
        self.learned_topic = topics.name("learned")
        rejects = Rejects(
            self.dead_letter_topic, metrics, settings.worker.dead_letter_value_max_bytes
        )
        #: The scorers' stream time per partition (read by a learner without a scorer).
        self._marks = RaisedMarks(registry.client, stream_time_key(settings))
        self.challengers = Challengers()
        self.challengers.expect(settings.model.challengers)
        learns = "learn" in roles
        self.scorer = (
            ScoreRole(
                settings, store, registry, metrics, self.challengers, rejects, following=not learns
            )
            if "score" in roles
            else None
        )
        self.holder = self.scorer.holder if self.scorer is not None else ModelHolder()
        metrics.models_refused.set_function(
            lambda: len(
                self.holder.refused
                | (
                    {self.learn.learner.refused_champion} - {None}
                    if self.learn and self.learn.learner
                    else set()
                )
            )
        )
        #: Scored vectors and learned labels go through Kafka to a monitor elsewhere.
        self._monitor_elsewhere = settings.drift.enabled and "monitor" not in roles
        self.watch = (
            None
            if monitor is None or "monitor" not in roles
            else MonitorRole(
                settings, monitor, registry, metrics, self.holder, rejects, following=not learns
            )
        )
        self.learn = (
            LearnRole(
                settings,
                store,
                registry,
                metrics,
                self.challengers,
                rejects,
                self.stream_time,
                self._serve,
                progress,
                self._learned,
            )
            if learns
            else None
        )

    # -- what the roles hold, for the app and for tests

    @property
    def learner(self) -> Learner | None:
        return None if self.learn is None else self.learn.learner

    @property
    def waiting(self) -> WaitingLabels | None:
        return None if self.learn is None else self.learn.waiting

    @property
    def monitor(self) -> DriftMonitor | None:
        return None if self.watch is None else self.watch.monitor

    @property
    def shadows(self) -> dict[str, ModelHolder]:
        return self.challengers.holders

    async def start(self) -> Learner | None:
        """Resume the learner and return it (without one, follow the published models)."""
        if self.learn is not None:
            first = self.learn.learner is None
            learner = await self.learn.start()
            if first and self.scorer is not None:
                await self.scorer.resume_stream_time()
            if self.watch is not None:
                self.watch.monitor.model_learned(learner.labels_learned)
            return learner
        if self.scorer is not None and self.holder.current is None:
            await self.scorer.follow()
            await self.scorer.resume_stream_time()  # (the future-time bound starts from it)
        return None

    # -- records in

    async def on_transaction(self, record: RawRecord) -> list[Emit]:
        """Score one raw transaction record."""
        return await self.on_transactions([record])

    async def on_transactions(self, records: Sequence[RawRecord]) -> list[Emit]:
        """Score a batch of raw transaction records, in order."""
        if self.scorer is None:
            raise RuntimeError("transactions reached a process without the score role")
        await self.start()
        batch = await self.scorer.on_transactions(records)
        out = batch.emits
        if self.learn is not None:
            self.learn.scored([r.txn_id for r, _, _ in batch.new])
        if self.watch is not None:
            self.watch.state_began(self.scorer.state_start)
            out += await self._drift(self.watch.on_scored_batch(batch.new))
        elif self._monitor_elsewhere:  # it dedups: a record scored again may be new to it
            out += [
                Emit(
                    self.scored_topic,
                    r.card_id.encode(),
                    encode_scored(r, Origin(source[1], behind)),
                )
                for r, source, behind in [*batch.new, *batch.again]
            ]
        return out

    async def on_label(self, record: RawRecord) -> list[Emit]:
        """Teach the model one raw label record (or keep it until the stream reaches it)."""
        return await self.on_labels([record])

    async def on_labels(self, records: Sequence[RawRecord]) -> list[Emit]:
        """Teach the models a batch of raw label records, in order."""
        if self.learn is None:
            raise RuntimeError("labels reached a process without the learn role")
        await self.start()
        return await self.learn.on_labels(records)

    async def on_waiting(self) -> list[Emit]:
        """Learn the waiting labels that are due (see :mod:`stream.runtime.waiting`)."""
        if self.learn is None:
            return []
        await self.start()
        return await self.learn.on_waiting()

    async def on_scored(self, records: Sequence[RawRecord]) -> list[Emit]:
        """A monitor on its own: scored records (with their vectors) from the scorers."""
        if self.watch is None:
            return []
        await self.watch.read_state_start()
        bad, events = self.watch.on_scored(records)
        return bad + await self._drift(events)

    async def on_learned(self, records: Sequence[RawRecord]) -> list[Emit]:
        """A monitor on its own: labels the learner learned, with their records."""
        if self.watch is None:
            return []
        await self.watch.read_state_start()
        bad, events = self.watch.on_learned(records)
        return bad + await self._drift(events)

    async def on_drift_events(self, records: Sequence[RawRecord]) -> list[Emit]:
        """A learner on its own: the monitor's alarms, for the automatic response."""
        if self.learn is None:
            return []
        events = []
        for record in records:
            try:
                events.append(decode_drift(record.value or b""))
            except Exception as exc:  # not ours to dead-letter: the monitor wrote it
                log.warning(
                    "unreadable drift event %s[%d]@%d: %r",
                    record.topic,
                    record.partition,
                    record.offset,
                    exc,
                )
        await self.learn.start()
        now = await self.stream_time()  # a new learner group reads the topic from its start:
        recent = [e for e in events if e.first_seen >= now - STALE_DRIFT_SECONDS]  # old news
        await self.learn.auto.on_events(recent)
        return []

    async def on_revoked(self, partitions: Sequence[tuple[str, int]]) -> list[Emit]:
        """The process no longer reads ``partitions`` (topic, partition): the drift
        detectors stop waiting for them."""
        if self.watch is None:
            return []
        return await self._drift(self.watch.on_revoked(partitions))

    async def on_timer(self) -> None:
        """Publish snapshots, follow the published models, report the stream time and the
        store's health, take new drift references when asked."""
        health = getattr(self.store, "health", None)
        if health is not None:
            memory, keys = await health()
            self.metrics.redis_memory.set(memory)
            self.metrics.redis_keys.set(keys)
        if self.learn is not None:
            if await self.learn.on_timer() and self.watch is not None:
                self.watch.refresh_reference()  # a new champion: compare against its traffic
        elif self.scorer is not None:
            await self.scorer.follow()
        if self.scorer is not None:
            await self.scorer.report_stream_time()
        if self.watch is not None:
            await self.watch.on_timer()

    async def stream_time(self) -> float:
        """The newest event time scored: this process's scorer's, or without one the
        newest any scorer reported."""
        if self.scorer is not None:
            return self.scorer.newest
        return await self._marks.highest()

    # -- links between the roles

    def _serve(self, serving: ServingModel) -> None:
        self.holder.swap(serving)
        self.metrics.model_version.set(serving.version)

    async def _learned(
        self,
        record: RawRecord | None,
        scored: ScoredRecord,
        label: Label,
        learned: int,
        again: bool,
    ) -> list[Emit]:
        """A label was learned: to the monitor, here or through Kafka (again, when it was
        learned before: its first send may have died with the learner; the monitor
        drops repeats)."""
        if self.watch is not None:
            if again:  # seen here already
                return []
            return await self._drift(self.watch.on_label(scored, label, learned))
        if self._monitor_elsewhere:
            origin = (
                Origin(-1, False) if record is None else Origin(record.partition, record.behind)
            )
            return [
                Emit(
                    self.learned_topic,
                    label.txn_id.encode(),
                    encode_learned(scored, label, learned, origin),
                )
            ]
        return []

    async def _drift(self, events: list[DriftEvent]) -> list[Emit]:
        """Alarms: to the automatic response (with a learner here) and to Kafka."""
        if not events or self.watch is None:
            return []
        if self.learn is not None:
            await self.learn.auto.on_events(events)
        return self.watch.emit(events)
