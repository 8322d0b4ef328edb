"""What the worker does with each record, free of any stream framework.

The Faust agents in :mod:`stream.app` only hand raw records to a
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
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from features.events import Transaction
from features.store import FeatureStore, ScoredRecord
from models.errors import NoModelError
from models.evaluation import Prequential
from models.factory import fraud_probabilities
from models.learner import Learner, Outcome
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
from stream.response import AutoChallenger
from stream.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RawRecord:
    """A record as consumed: where it came from and its undecoded bytes."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True, slots=True)
class Emit:
    """A record to produce."""

    topic: str
    key: bytes | None
    value: bytes


def dead_letter(record: RawRecord, topic: str, reason: str, detail: str) -> Emit:
    """The dead-letter record for ``record``: where it was, what it was, why.

    Examples
    --------
    >>> raw = RawRecord("transactions", 0, 7, b"c1", b"{}")
    >>> out = dead_letter(raw, "dead-letters", "invalid_record", "amount: Field required")
    >>> json.loads(out.value)["reason"], json.loads(out.value)["detail"]
    ('invalid_record', 'amount: Field required')
    """
    value = None if record.value is None else record.value.decode("utf-8", "replace")
    key = None if record.key is None else record.key.decode("utf-8", "replace")
    payload = {
        "source_topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "key": key,
        "value": value,
        "reason": reason,
        "detail": detail,
    }
    return Emit(topic, record.key, json.dumps(payload, separators=(",", ":")).encode())


class Pipeline:
    """Scores transactions and learns from labels, for one worker process."""

    def __init__(
        self, settings: Settings, store: FeatureStore, registry: ModelRegistry,
        metrics: PipelineMetrics, monitor: DriftMonitor | None = None,
    ) -> None:
        self.settings = settings
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
        #: Drift detectors (None: not watched).
        self.monitor = monitor
        self.auto = AutoChallenger(self)
        self._refresh_seen: object = _UNSEEN
        self._scoring: Scorer | None = None

    async def start(self) -> Learner:
        """Resume the learner and load the published model (once)."""
        if self.learner is not None:  # the hot path: already started, no lock needed
            return self.learner
        async with self._start_lock:
            if self.learner is None:
                self.learner = await Learner.start(
                    self.registry, self.store, self.settings.model.name,
                    self.settings.model.snapshot_every_labels, quality=self._quality(),
                )
                meta, model = await self.registry.load()
                self._serve(ServingModel(meta.version, model))
                if self.monitor is not None:
                    self.monitor.model_learned(self.learner.labels_learned)
                for name in self.settings.model.challengers:
                    challenger = await Learner.start(
                        self.registry.challenger(name), self.store, name,
                        self.settings.model.snapshot_every_labels, shadow_name=name,
                        quality=self._quality())
                    self.challengers[name] = challenger
                    self.shadows[name].swap(ServingModel(challenger.meta.version,
                                                         copy.deepcopy(challenger.model)))
            return self.learner

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
        for (record, txn), result in zip(decoded, results, strict=True):
            if result.record is None:
                out.append(self._reject(record, "transactions", "too_late",
                                        self._lateness_detail(txn, result.applied.newest)))
                continue
            if result.duplicate:
                self.metrics.duplicates.labels(topic="transactions").inc()
            else:
                self._newest = max(self._newest, txn.event_time)
                if self.monitor is not None:
                    out += self._drift(self.monitor.on_scored(result.record, self._scorer()))
            self.metrics.scores_out.inc()
            out.append(Emit(self.scores_topic, txn.card_id.encode(), _score_value(result.record)))
        return out

    def _scorer(self) -> Scorer | None:
        """The serving model's scorer, for prediction drift (one per model version)."""
        serving = self.holder.current
        if serving is None:
            return None
        if self._scoring is None or self._scoring.key != serving.version:
            self._scoring = Scorer(serving.version, partial(fraud_probabilities, serving.model))
        return self._scoring

    def _drift(self, events: list[DriftEvent]) -> list[Emit]:
        for event in events:
            log.warning("drift: %s on %s = %.4g (first seen at event time %.0f)",
                        event.detector, event.subject, event.magnitude, event.first_seen)
        return [Emit(self.drift_topic, e.detector.encode(), encode_event(e)) for e in events]

    def _lateness_detail(self, txn: Transaction, newest: float | None) -> str:
        behind = 0.0 if newest is None else newest - txn.event_time
        allowed = self.settings.features.allowed_lateness_seconds
        return (f"event_time: {behind:.3f}s before card {txn.card_id!r}'s newest event, "
                f"more than the allowed lateness of {allowed:g}s")

    async def on_label(self, record: RawRecord) -> list[Emit]:
        """Teach the model one raw label record."""
        self.metrics.events_in.labels(topic="labels").inc()
        learner = await self.start()
        started = time.perf_counter()
        try:
            label = decode_label(record.value or b"")
        except RecordError as exc:
            return [self._reject(record, "labels", "invalid_record", str(exc))]
        async with self._learn_lock:
            outcome, published = await learner.learn(label)
            if outcome is not Outcome.UNKNOWN_TRANSACTION:
                for name, challenger in self.challengers.items():
                    _, shadow = await challenger.learn(label)
                    if shadow is not None:
                        self.shadows[name].swap(shadow)
        self.metrics.latency.labels(stage="learn").observe(time.perf_counter() - started)
        if outcome is Outcome.UNKNOWN_TRANSACTION:
            detail = f"txn_id: no scored transaction {label.txn_id!r} (unknown or expired)"
            return [self._reject(record, "labels", outcome.value, detail)]
        if outcome is Outcome.DUPLICATE:
            self.metrics.duplicates.labels(topic="labels").inc()
        else:
            self.metrics.labels_learned.inc()
            self.metrics.quality.label_delay.observe(learner.last_delay)
        if published is not None:
            self._serve(published)
        if outcome is Outcome.LEARNED and learner.last_record is not None:
            self.auto.remember(learner.last_record, label)
            if self.monitor is not None:
                self.monitor.model_learned(learner.labels_learned)
                events = self.monitor.on_label(learner.last_record, label)
                await self.auto.on_events(events)
                return self._drift(events)
        return []

    async def on_timer(self) -> None:
        """Publish a snapshot if anything was learned since the last one; follow the
        champion if an operator promoted or rolled back; report the store's health."""
        health = getattr(self.store, "health", None)
        if health is not None:
            memory, keys = await health()
            self.metrics.redis_memory.set(memory)
            self.metrics.redis_keys.set(keys)
        await self._refresh_on_request()
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
