"""The pipeline embedded: score, learn and monitor a whole stream without servers.

:func:`run_embedded` feeds transactions and labels, in the order they become
known, through the worker's own code: :func:`models.scoring.score_batch`
over a :class:`~features.memory.MemoryFeatureStore`, the learner's rule
(each label teaches the model the vector its transaction was scored with;
a fraud label enters its terminal's risk from its arrival on; a new snapshot
serves every ``snapshot_every_labels`` labels) and the worker's
:class:`~monitoring.monitor.DriftMonitor`.

A label is learned only once the stream's event time has reached its
arrival, at any replay speed. Transactions are scored in batches: a batch
ends before a fraud label arrives (it changes the features of later
transactions) and before a label completes a snapshot (it changes the
model that scores them); genuine labels in between only teach the model,
which serves nothing new until its next snapshot, so they are learned
after the batch with the same effect as one by one.

Beside the champion, ``compare`` models learn the same labels and score the
same vectors in shadow, and a copy of the champion stops learning at
``freeze_after_days``: the "train once, then frozen" baseline.

With a :class:`Promotion` rule, a challenger that beats the serving model on
the latest labelled transactions both scored (its average precision ahead
by a margin, with a paired bootstrap's p-value at most alpha: the worker's
own rule, :func:`stream.runtime.response.ahead`) is promoted and serves from its next
batch on; the one it replaced goes on in shadow and can win back. The
``served`` scores are those of whichever model served each transaction.

Examples
--------
>>> from features.events import Label, Transaction
>>> events = [Transaction("a", "c", "p", 10.0, 0.0), Label("a", True, 50.0),
...           Transaction("b", "c", "p", 5.0, 86400.0 * 2)]
>>> result = run_embedded(events, EmbeddedOptions(drift=None))
>>> result.scored, result.learned, result.label_fraud.tolist()
(2, 1, [1, -1])
"""

from __future__ import annotations

import asyncio
import copy
import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from functools import partial

import numpy as np
from prometheus_client import CollectorRegistry
from river import base

from features.events import Label, Transaction
from features.memory import MemoryFeatureStore
from features.store import ScoredRecord
from features.vector import FEATURE_NAMES
from models.calls import fraud_probabilities, learn
from models.factory import build_model
from models.scoring import ModelHolder, ServingModel, score_batch
from monitoring.drift.base import DriftEvent, Rescorer
from monitoring.drift_metrics import DriftMetrics
from monitoring.monitor import DriftMonitor
from producers.replay import Progress
from stream.runtime.response import ahead
from stream.scorecard.options import FROZEN, SERVED, EmbeddedOptions, EmbeddedResult, Promotion
from stream.wiring import CYCLIC, watched_features


class _Lineage:
    """One model: learns each label, serves a snapshot taken every N labels."""

    def __init__(self, name: str, every: int, freeze_at: float | None = None) -> None:
        #: What its scores are called: the model's name, or :data:`FROZEN`.
        self.name = name if freeze_at is None else FROZEN
        self.model: base.Classifier = build_model(name)
        self.every = every
        self.freeze_at = freeze_at
        self.learned = 0
        self.unpublished = 0
        self.serving = ServingModel(0, copy.deepcopy(self.model))

    def learn(self, features: dict[str, float], label: Label, scored_at: float) -> bool:
        """Learn one label (of a transaction scored at ``scored_at``); whether a new
        snapshot now serves."""
        if self.freeze_at is not None and label.event_time >= self.freeze_at:
            return False
        learn(self.model, features, label.is_fraud, scored_at, label.event_time)
        self.learned += 1
        self.unpublished += 1
        if self.unpublished < self.every:
            return False
        self.unpublished = 0
        self.serving = ServingModel(self.learned, copy.deepcopy(self.model))
        return True


def run_embedded(
    events: Iterable[Transaction | Label],
    options: EmbeddedOptions,
    total: int | None = None,
    progress: Progress | None = None,
    on_alarm: Callable[[DriftEvent], object] | None = None,
) -> EmbeddedResult:
    """Run ``events`` through the pipeline, embedded; see the module's docs.

    Parameters
    ----------
    events
        Transactions and labels in arrival order (:func:`stream.sources.events_from_frames`).
    options
        The champion, the challengers, the frozen baseline, the promotion rule, the
        detectors.
    total
        How many events there are, for ``progress``.
    progress
        Called with (events done, total, seconds) as the run goes.
    on_alarm
        Called with each drift alarm as it is raised.

    Returns
    -------
    EmbeddedResult
        Every transaction's scores and label, the alarms and the statistics.
    """
    return asyncio.run(_Run(options, progress, on_alarm).run(events, total))


class _Run:
    def __init__(
        self,
        options: EmbeddedOptions,
        progress: Progress | None,
        on_alarm: Callable[[DriftEvent], object] | None,
    ) -> None:
        self.options = options
        self.progress = progress
        self.on_alarm = on_alarm
        self.store = MemoryFeatureStore(allowed_lateness=options.allowed_lateness)
        self.champion = _Lineage(options.model, options.snapshot_every_labels)
        self.others = [_Lineage(name, options.snapshot_every_labels) for name in options.compare]
        self.frozen: _Lineage | None = None
        self.holder = ModelHolder()
        self.holder.swap(self.champion.serving)
        self.monitor: DriftMonitor | None = None
        self.scorer: Rescorer | None = None
        self.pending: list[Transaction] = []
        self.queued: list[Label] = []
        self.index: dict[str, int] = {}
        self.learned_ids: set[str] = set()
        self.txn_ids: list[str] = []
        self.times: list[float] = []
        self.cards: list[str] = []
        self.scores: dict[str, list[float]] = {}
        self.labels: dict[int, tuple[int, float]] = {}
        self.alarms: list[DriftEvent] = []
        self.statistics: dict[str, list[tuple[float, float]]] = {}
        self.checked = -1
        self.counts = {"scored": 0, "too_late": 0, "duplicate_labels": 0, "unknown_labels": 0}
        self.records: dict[str, ScoredRecord] = {}
        self.vectors: list[list[float]] = []
        #: (transaction index, is fraud) of the latest labels, for the promotion test (twice
        #: as many as it takes: a transaction one model did not score does not count).
        self.recent: deque[tuple[int, bool]] = deque(
            maxlen=2 * options.promote.labels if options.promote else 1
        )
        self.promotions: list[dict[str, float | str]] = []

    def _names(self) -> list[str]:
        return [
            self.champion.name,
            *(o.name for o in self.others),
            *([FROZEN] if self.options.freeze_after_days is not None else []),
            *([SERVED] if self.options.promote is not None else []),
        ]

    def _start(self, first: float) -> None:
        days = self.options.freeze_after_days
        if days is not None:
            self.frozen = _Lineage(
                self.options.model,
                self.options.snapshot_every_labels,
                freeze_at=(first // 86400) * 86400 + days * 86400,
            )
        self.scores = {name: [] for name in self._names()}
        config = self.options.drift
        if config is not None:
            self.monitor = DriftMonitor(
                config,
                watched_features(self.options.watched),
                self.options.threshold,
                DriftMetrics.create(CollectorRegistry()),
                calendar=sorted(CYCLIC),
            )
            self.monitor.state_began(first)
            self._new_scorer()

    def _lineages(self) -> list[_Lineage]:
        return [self.champion, *self.others, *([self.frozen] if self.frozen else [])]

    async def run(self, events: Iterable[Transaction | Label], total: int | None) -> EmbeddedResult:
        started = time.perf_counter()
        seen = 0
        for event in events:
            seen += 1
            if isinstance(event, Transaction):
                if not self.txn_ids and not self.pending:
                    self._start(event.event_time)
                self.pending.append(event)
                if len(self.pending) >= self.options.batch_size:
                    await self._flush()
            else:
                self.queued.append(event)
                due = self.champion.unpublished + len(self.queued) >= self.champion.every
                if event.is_fraud or due:
                    await self._flush()
            if self.progress is not None and seen % 50_000 == 0:
                self.progress(seen, total or seen, time.perf_counter() - started)
        await self._flush()
        if self.progress is not None:
            self.progress(seen, total or seen, time.perf_counter() - started)
        return self._result(time.perf_counter() - started)

    async def _flush(self) -> None:
        if self.pending:
            await self._score(self.pending)
            self.pending = []
        if self.queued:
            queued, self.queued = self.queued, []
            for label in queued:
                await self._learn(label)

    async def _score(self, txns: list[Transaction]) -> None:
        results = await score_batch(self.store, self.holder, txns)
        watched = []
        others = self._lineages()[1:]
        new = [r.record for r in results if not r.duplicate and r.record is not None]
        shadow = (
            {
                o.name: iter(
                    fraud_probabilities(o.serving.model, [r.features for r in new]).tolist()
                )
                for o in others
            }
            if new and others
            else {}
        )
        for result in results:
            txn, record = result.txn, result.record
            if result.duplicate:
                continue
            self.index[txn.txn_id] = len(self.txn_ids)
            self.txn_ids.append(txn.txn_id)
            self.times.append(txn.event_time)
            self.cards.append(txn.card_id)
            if record is None:
                self.counts["too_late"] += 1
                for column in self.scores.values():
                    column.append(float("nan"))
                if self.options.keep_vectors:
                    self.vectors.append([float("nan")] * len(FEATURE_NAMES))
                continue
            if self.options.keep_vectors:
                self.vectors.append([record.features[f] for f in FEATURE_NAMES])
            self.counts["scored"] += 1
            self.scores[self.champion.name].append(record.score)
            if self.options.promote is not None:
                self.scores[SERVED].append(record.score)
            for name, scores in shadow.items():  # each model scores the batch in one call
                self.scores[name].append(next(scores))
            if self.options.keep_records:
                self.records[txn.txn_id] = record
            watched.append((record, None, False))
        if self.monitor is not None and watched:
            self._alarmed(self.monitor.on_scored_batch(watched, self.scorer))
            self._statistics(txns[-1].event_time)

    async def _learn(self, label: Label) -> None:
        if label.txn_id in self.learned_ids:
            self.counts["duplicate_labels"] += 1
            return
        record = await self.store.scored(label.txn_id, label.card_id)
        if record is None:
            self.counts["unknown_labels"] += 1
            return
        self.learned_ids.add(label.txn_id)
        self.labels[self.index[label.txn_id]] = (int(label.is_fraud), label.event_time)
        if label.is_fraud:
            await self.store.record_fraud(record, label)
        features = record.features
        if self.champion.learn(features, label, record.event_time):
            self.holder.swap(self.champion.serving)
            self._new_scorer()
        for other in self._lineages()[1:]:
            other.learn(features, label, record.event_time)
        if not self.options.keep_records:
            self.store.forget(label.txn_id)
        if self.monitor is not None:
            self.monitor.model_learned(self.champion.learned)
            self._alarmed(self.monitor.on_label(record, label))
        rule = self.options.promote
        if rule is not None and self.others:
            self.recent.append((self.index[label.txn_id], label.is_fraud))
            if len(self.learned_ids) % rule.period == 0:
                self._promote_if_ahead(rule, label.event_time)

    def _promote_if_ahead(self, rule: Promotion, at: float) -> None:
        """Promote the first challenger that beats the serving model (the worker's rule)."""
        serving = self.scores[self.champion.name]
        for other in self.others:
            theirs = self.scores[other.name]
            pairs = [
                (serving[i], theirs[i], fraud)
                for i, fraud in self.recent
                if not (math.isnan(serving[i]) or math.isnan(theirs[i]))
            ]
            better, ours_ap, their_ap, p = ahead(pairs, rule.labels, rule.margin, rule.alpha)
            if not better:
                continue
            self.promotions.append(
                {
                    "at": at,
                    "from": self.champion.name,
                    "to": other.name,
                    "from_ap": ours_ap,
                    "to_ap": their_ap,
                    "p_value": p,
                }
            )
            self.others[self.others.index(other)] = self.champion
            self.champion = other
            self.recent.clear()  # the next test is on labels that come after this one
            self.holder.swap(other.serving)
            self._new_scorer()
            if self.monitor is not None:  # a new champion: compare against its traffic
                self.monitor.refresh_reference()
            return

    def _new_scorer(self) -> None:
        serving = self.champion.serving
        self.scorer = Rescorer(serving.version, partial(fraud_probabilities, serving.model))

    def _alarmed(self, events: list[DriftEvent]) -> None:
        for event in events:
            self.alarms.append(event)
            if self.on_alarm is not None:
                self.on_alarm(event)

    def _statistics(self, at: float) -> None:
        """Record the detectors' statistics when the data-drift windows were checked."""
        monitor = self.monitor
        if monitor is None or monitor.data.checks == self.checked:
            return
        self.checked = monitor.data.checks
        values: dict[str, float] = {f"{d} {f}": v for (d, f), v in monitor.data.latest.items()}
        values.update({f"kswin_p_value {f}": v for f, v in monitor.kswin.latest.items()})
        values.update({f"mean_shift {f}": v for f, v in monitor.mean_shift.latest.items()})
        values.update(monitor.prediction.latest)
        values.update(monitor.labels.latest)
        for name, value in values.items():
            self.statistics.setdefault(name, []).append((at, float(value)))

    def _result(self, seconds: float) -> EmbeddedResult:
        count = len(self.txn_ids)
        fraud = np.full(count, -1, dtype=np.int8)
        arrival = np.full(count, np.nan)
        for i, (is_fraud, at) in self.labels.items():
            fraud[i], arrival[i] = is_fraud, at
        return EmbeddedResult(
            txn_ids=self.txn_ids,
            times=np.array(self.times, dtype=float),
            cards=np.array(self.cards, dtype=object),
            scores={name: np.array(column, dtype=float) for name, column in self.scores.items()},
            label_fraud=fraud,
            label_time=arrival,
            alarms=self.alarms,
            statistics=self.statistics,
            champion=SERVED if self.options.promote is not None else self.champion.name,
            scored=self.counts["scored"],
            too_late=self.counts["too_late"],
            learned=len(self.learned_ids),
            duplicate_labels=self.counts["duplicate_labels"],
            unknown_labels=self.counts["unknown_labels"],
            seconds=seconds,
            records=self.records,
            promotions=self.promotions,
            vectors=np.array(self.vectors, dtype=np.float32).reshape(-1, len(FEATURE_NAMES))
            if self.options.keep_vectors
            else None,
        )
