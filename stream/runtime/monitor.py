"""The monitor role: every drift detector, on the whole stream, in event time.

One monitor is active at a time (a lease, like the learner's), so one drift
pages once. In the process that scores and learns it is handed the scored
records and learned labels directly; on its own it reads them from the
internal topics ``scored`` and ``learned`` (the vectors the transactions
were scored with, the labels with theirs) and follows the champion for
prediction drift. Either way :class:`~monitoring.monitor.DriftMonitor`
orders the scored records in event time across partitions
(:mod:`monitoring.ordering`); the labels come in the order they were learned.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Hashable, Sequence
from functools import partial

from features.events import Label
from features.store import ScoredRecord
from models.calls import fraud_probabilities
from models.following import follow
from models.registry import ModelRegistry
from models.scoring import ModelHolder
from monitoring.drift.base import DriftEvent, Rescorer
from monitoring.metrics import PipelineMetrics
from monitoring.monitor import DriftMonitor, encode_event
from stream.runtime.records import Emit, RawRecord, Rejects, decode_learned, decode_scored
from stream.runtime.scorer import state_began_key
from stream.settings import Settings

log = logging.getLogger(__name__)

#: How many transaction ids the monitor remembers to drop scored records sent again.
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
    """The Redis key an operator sets to make the monitor take new drift references."""
    return f"{settings.redis.key_prefix}:drift:refresh"


class MonitorRole:
    """Runs the drift detectors and turns their alarms into ``drift-events`` records."""

    def __init__(
        self,
        settings: Settings,
        monitor: DriftMonitor,
        registry: ModelRegistry,
        metrics: PipelineMetrics,
        holder: ModelHolder,
        rejects: Rejects,
        following: bool,
    ) -> None:
        self.settings = settings
        self.monitor = monitor
        self.registry = registry
        self.metrics = metrics
        #: The champion as served (prediction drift rescoring uses it).
        self.holder = holder
        self.rejects = rejects
        #: On its own: follow the champion, and the feature state's start, from Redis.
        self.following = following
        self.drift_topic = settings.topics.name("drift_events")
        self._scoring: Rescorer | None = None
        self._seen = RecentIds(SEEN_KEPT)
        self._seen_labels = RecentIds(SEEN_KEPT)
        self._state_start: float | None = None
        self._audits: int | None = None
        self._refresh_seen: object = _UNSEEN

    def state_began(self, event_time: float | None) -> None:
        """The feature state's first transaction (None: not known yet)."""
        if event_time is not None and self._state_start is None:
            self._state_start = event_time
            self.monitor.state_began(event_time)

    def on_scored_batch(
        self, batch: Sequence[tuple[ScoredRecord, Hashable, bool]]
    ) -> list[DriftEvent]:
        """Newly scored records, each with its partition and whether it was behind."""
        return self.monitor.on_scored_batch(batch, self._scorer())

    def on_label(self, record: ScoredRecord, label: Label, learned: int) -> list[DriftEvent]:
        """A learned label; ``learned`` labels the champion's lineage has learned."""
        self.monitor.model_learned(learned)
        return self.monitor.on_label(record, label)

    def on_revoked(self, partitions: Sequence[tuple[str, int]]) -> list[DriftEvent]:
        """Partitions this process no longer reads: stop waiting for them."""
        return self.monitor.forget(partitions)

    def on_scored(self, records: Sequence[RawRecord]) -> tuple[list[Emit], list[DriftEvent]]:
        """Scored records from the scorers, through the ``scored`` topic; a record sent
        again (a scorer's redelivery) is seen once."""
        self.metrics.events_in.labels(topic="scored").inc(len(records))
        bad: list[Emit] = []
        batch: list[tuple[ScoredRecord, Hashable, bool]] = []
        for record in records:
            try:
                scored, origin = decode_scored(record.value or b"")
            except Exception as exc:  # struct.error, IndexError, UnicodeDecodeError
                bad.append(self.rejects(record, "scored", "invalid_record", repr(exc)))
                continue
            if self._seen.add(scored.txn_id):  # ordered as if it read the scorers' partitions
                batch.append((scored, origin.source, origin.behind or record.behind))
            else:
                self.metrics.duplicates.labels(topic="scored").inc()
        return bad, self.on_scored_batch(batch)

    def on_learned(self, records: Sequence[RawRecord]) -> tuple[list[Emit], list[DriftEvent]]:
        """Learned labels from the learner, through the ``learned`` topic."""
        self.metrics.events_in.labels(topic="learned").inc(len(records))
        bad: list[Emit] = []
        events: list[DriftEvent] = []
        for record in records:
            try:
                scored, label, learned, _ = decode_learned(record.value or b"")
            except Exception as exc:  # struct.error, IndexError, UnicodeDecodeError
                bad.append(self.rejects(record, "learned", "invalid_record", repr(exc)))
                continue
            if not self._seen_labels.add(label.txn_id):  # the learner sent it again
                self.metrics.duplicates.labels(topic="learned").inc()
                continue
            events += self.on_label(scored, label, learned)
        return bad, events

    def emit(self, events: Sequence[DriftEvent]) -> list[Emit]:
        """The ``drift-events`` records of ``events``, naming this pipeline."""
        pipeline = self.settings.worker.app_id
        for event in events:
            log.warning(
                "drift in %s: %s on %s = %.4g (first seen at event time %.0f)",
                pipeline,
                event.detector,
                event.subject,
                event.magnitude,
                event.first_seen,
            )
        return [
            Emit(self.drift_topic, e.detector.encode(), encode_event(e, pipeline)) for e in events
        ]

    async def on_timer(self) -> None:
        """Take new references if an operator asked; on its own, follow the champion (a
        promote or rollback means new references) and learn when the state began."""
        await self._refresh_on_request()
        if not self.following:
            return
        meta = await follow(self.registry, self.holder)
        if meta is not None:
            self.monitor.model_learned(meta.labels_learned)
        audits = await self.registry.audit_length()
        if self._audits is not None and audits != self._audits:
            self.monitor.refresh_reference()  # promoted or rolled back: its own traffic
        self._audits = audits
        await self.read_state_start()

    async def read_state_start(self) -> None:
        """On its own, learn from Redis when the feature state began, before any record is
        watched (the scorers record it before they score their first transaction)."""
        if self.following and self._state_start is None:
            began = await self.registry.client.get(state_began_key(self.settings))
            self.state_began(None if began is None else float(began))

    def refresh_reference(self) -> None:
        self.monitor.refresh_reference()

    async def _refresh_on_request(self) -> None:
        """Take new drift references when an operator asked (``fraudstream drift-refresh``)."""
        asked = await self.registry.client.get(drift_refresh_key(self.settings))
        if self._refresh_seen is _UNSEEN:  # a request from before this monitor started is old
            self._refresh_seen = asked
        elif asked is not None and asked != self._refresh_seen:
            self.monitor.refresh_reference()
            log.warning("drift references refreshed on request")
            self._refresh_seen = asked

    def _scorer(self) -> Rescorer | None:
        """The serving model's scorer, for prediction drift (one per model version)."""
        serving = self.holder.current
        if serving is None:
            return None
        if self._scoring is None or self._scoring.key != serving.version:
            self._scoring = Rescorer(serving.version, partial(fraud_probabilities, serving.model))
        return self._scoring


_UNSEEN = object()


def decode_drift(raw: bytes) -> DriftEvent:
    """A ``drift-events`` record back as an event (the learner's auto-response reads them).

    >>> event = DriftEvent("adwin", "champion", 2.0, 500, 1.0, 2.0)
    >>> decode_drift(encode_event(event, "fs")) == event
    True
    """
    fields = json.loads(raw)
    fields.pop("pipeline", None)
    return DriftEvent(**fields)
