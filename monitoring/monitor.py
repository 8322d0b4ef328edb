"""The worker's drift monitor: detectors fed by the stream, metrics and events out.

:class:`DriftMonitor` receives every newly scored transaction (its vector
and score) and every learned label (with the score it was given), feeds the
detectors of :mod:`monitoring.drift` with event times, counts their alarms
(their statistics are read at scrape time: :mod:`monitoring.drift_metrics`), and
returns the drift events for the ``drift-events`` topic.

No detector starts before the feature state holds ``state_maturity_days``
of history (:meth:`DriftMonitor.state_began`; the worker keeps the state's
first event time in Redis). The prediction, label and concept detectors
depend on the model, so they also wait until its lineage has learned
``warm_up`` labels (:meth:`DriftMonitor.model_learned`; the count survives
restarts, being part of the model's snapshots), and prediction
drift rescores both of its windows with the current model (see
:class:`~monitoring.drift.prediction.PredictionDrift`).

Scored records reach the detectors in event-time order across the
worker's partitions (:mod:`monitoring.ordering`): the caller says which
partition each came from and whether that partition had more waiting.
Labels come as they are learned: the worker reads them in step with the
stream (:mod:`stream.runtime.flow`).

Examples
--------
>>> from prometheus_client import CollectorRegistry
>>> from features.store import ScoredRecord
>>> registry = CollectorRegistry()
>>> config = DriftConfig(reference_size=20, window_size=20, check_every=20, reference_days=0)
>>> monitor = DriftMonitor(config, ["x"], 0.5, DriftMetrics.create(registry))
>>> for i in range(40):
...     _ = monitor.on_scored(ScoredRecord(f"t{i}", "c", "p", float(i), {"x": float(i < 20)},
...                                        0.1, 1))
>>> round(registry.get_sample_value("fraudstream_feature_psi", {"feature": "x"}), 1)
18.4
"""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from features.events import Label
from features.store import ScoredRecord
from monitoring.drift.base import Detector, DriftEvent, LabelObservation, Rescorer, TxnObservation
from monitoring.drift.concept import ConceptDrift
from monitoring.drift.config import DriftConfig
from monitoring.drift.data import DataDrift
from monitoring.drift.kswin import SampledKSWIN
from monitoring.drift.labels import LabelDrift
from monitoring.drift.mean_shift import MeanShift
from monitoring.drift.missed_fraud import MissedFraud
from monitoring.drift.prediction import PredictionDrift
from monitoring.drift_metrics import DriftMetrics, DriftStatistics
from monitoring.ordering import EventTimeOrder
from monitoring.reports import ReportBudget, save_windows


class DriftMonitor:
    """Every detector of one worker.

    Parameters
    ----------
    config
        The detectors' windows and thresholds (the settings section ``drift``).
    features
        The features data drift watches (PSI and KS).
    threshold
        The operating threshold: prediction drift's flagged share, missed frauds.
    metrics
        Where alarms are counted and the detectors' statistics read at scrape time.
    reports
        The folder and budget of Evidently reports on a data-drift alarm (None: none).
    launch
        Builds a report from its folder (returns something with ``poll()``).
    calendar
        The calendar features, which prediction drift takes from the current window
        when it rescores the reference.
    """

    def __init__(
        self,
        config: DriftConfig,
        features: Sequence[str],
        threshold: float,
        metrics: DriftMetrics,
        reports: ReportBudget | None = None,
        launch: Callable[[Path], Any] | None = None,
        calendar: Sequence[str] = (),
    ) -> None:
        self.config = config
        #: The prediction, label and concept detectors run once the model is warm ...
        self.armed = config.warm_up == 0
        self._learned = 0
        #: ... and the feature state old enough (event time of its first transaction).
        self._state_start: float | None = None
        self.data = DataDrift(config, features)
        self.kswin = SampledKSWIN(config, config.kswin_features)
        self.mean_shift = MeanShift(config, config.mean_shift_features)
        #: On a data-drift alarm the windows are saved in the budget's folder and ``launch``
        #: builds the report (it returns something with ``poll()``, e.g. a ``Popen``).
        self.reports = reports
        self.launch = launch
        self._report: Path | None = None
        self._building: Any = None
        self.prediction = PredictionDrift(config, threshold, calendar)
        self.labels = LabelDrift(config)
        self.concept = ConceptDrift(config)
        self.missed = MissedFraud(config, threshold)
        #: Who watches a scored transaction (the prediction detector too once armed), and
        #: who watches a label: fixed, as refreshing a detector keeps the object.
        self._watch_scored: tuple[Detector[TxnObservation], ...] = (
            self.data,
            self.kswin,
            self.mean_shift,
        )
        self._watch_armed = (*self._watch_scored, self.prediction)
        self._watch_labels: tuple[Detector[LabelObservation], ...] = (
            self.labels,
            self.concept,
            self.missed,
        )
        self.metrics = metrics
        metrics.watch(
            DriftStatistics(
                self.data, self.kswin, self.mean_shift, self.prediction, self.labels, self.missed
            )
        )
        # Every alarm counter exists from the start at 0: an alert on its increase() would
        # not see a series that first appears at 1.
        for detector in self.detectors:
            for name, subject in detector.alarm_keys():
                metrics.alarms.labels(detector=name, subject=subject)
        for outcome in ("built", "recent", "busy"):
            metrics.reports.labels(outcome=outcome)
        metrics.armed.set(int(self.armed))
        self._scored: EventTimeOrder[ScoredRecord] = EventTimeOrder(config.order_max_held)
        #: The model's latest scorer: held records are rescored with it when they go.
        self._scorer: Rescorer | None = None
        self._early: dict[str, int] = {}  # released_early already counted, per stream

    @property
    def detectors(self) -> tuple[Detector[TxnObservation] | Detector[LabelObservation], ...]:
        """Every detector: those of scored transactions, then those of labels."""
        return (
            self.data,
            self.kswin,
            self.mean_shift,
            self.prediction,
            self.labels,
            self.concept,
            self.missed,
        )

    def model_learned(self, labels: int) -> None:
        """The champion's lineage has learned ``labels`` labels (arms the model detectors)."""
        self._learned = max(self._learned, labels)

    def state_began(self, event_time: float) -> None:
        """The feature state's first transaction was at ``event_time``.

        Until the state holds ``state_maturity_days`` of history its longest
        windows (and each card's usual location) are still filling, and vectors
        (so scores) drift by that alone: no detector starts before. Not told,
        the monitor takes the state as mature.
        """
        self._state_start = event_time

    def _mature(self, at: float) -> bool:
        """Whether the feature state holds enough history at event time ``at``."""
        return (
            self._state_start is None
            or at - self._state_start >= self.config.state_maturity_days * 86400
        )

    def on_scored(
        self,
        record: ScoredRecord,
        scorer: Rescorer | None = None,
        source: Hashable = None,
        behind: bool = False,
    ) -> list[DriftEvent]:
        """A newly scored transaction (never a redelivery), and the model's current scorer.

        The detectors see it once every partition behind has reached its event time.

        Parameters
        ----------
        record
            The scored transaction: its event time, feature vector and score.
        scorer
            The current model's scorer, with which prediction drift rescores its windows
            (None: it compares the live scores).
        source
            The partition the record came from.
        behind
            Whether that partition had more records waiting after it.
        """
        return self.on_scored_batch([(record, source, behind)], scorer)

    def on_scored_batch(
        self, batch: Sequence[tuple[ScoredRecord, Hashable, bool]], scorer: Rescorer | None = None
    ) -> list[DriftEvent]:
        """:meth:`on_scored` for a fetched batch of ``(record, source, behind)``.

        Parameters
        ----------
        batch
            The batch's records, each with its partition and whether that partition had
            more records waiting after it.
        scorer
            The current model's scorer (as for :meth:`on_scored`).
        """
        self._scorer = scorer
        released = self._scored.add_many(
            (record.event_time, record, source, behind) for record, source, behind in batch
        )
        return self._scored_in_order(released)

    def on_label(self, record: ScoredRecord, label: Label) -> list[DriftEvent]:
        """A learned label, with the record its transaction was scored with.

        Labels are not held for order here: the worker reads them in step with the
        stream (:mod:`stream.runtime.flow`), and learns each once the stream has
        reached it, so they come in event-time order up to the flow's leads.

        Parameters
        ----------
        record
            The record the label's transaction was scored with (its score, event time, card
            and terminal).
        label
            The label: fraud or not, and its event time.
        """
        return self._on_label(record, label)

    def forget(self, sources: Iterable[Hashable]) -> list[DriftEvent]:
        """The worker no longer reads ``sources`` (partitions revoked): stop waiting for them."""
        return self._scored_in_order(self._scored.forget(list(sources)))

    def _scored_in_order(self, released: list[ScoredRecord]) -> list[DriftEvent]:
        events = [e for record in released for e in self._on_scored(record, self._scorer)]
        self._held("scored", len(self._scored), self._scored.released_early)
        return events

    def _held(self, stream: str, held: int, released_early: int) -> None:
        self.metrics.held.labels(stream=stream).set(held)
        counted = self._early.get(stream, 0)
        if released_early > counted:
            self.metrics.released_early.labels(stream=stream).inc(released_early - counted)
            self._early[stream] = released_early

    def _on_scored(self, record: ScoredRecord, scorer: Rescorer | None) -> list[DriftEvent]:
        if not self._mature(record.event_time):
            return []  # no detector takes a reference from a state still filling
        if not self.armed and self._learned >= self.config.warm_up:
            self.armed = True
            self.metrics.armed.set(1)
        seen = TxnObservation(record.event_time, record.features, record.score, scorer)
        watching = self._watch_armed if self.armed else self._watch_scored
        events = [event for detector in watching for event in detector.update(seen)]
        data_drift = [e for e in events if e.detector in ("psi", "ks", "kswin", "mean_shift")]
        if data_drift:
            self._start_report(data_drift[0])
        return self._count(events)

    def _start_report(self, event: DriftEvent) -> None:
        if self.reports is None or self.launch is None or not self.data.windows.full:
            return  # (KSWIN can alarm while the reference is still filling after a refresh)
        building = self._building is not None and self._building.poll() is None
        outcome = self.reports.allow(event.detector, event.subject, event.first_seen, building)
        self.metrics.reports.labels(outcome=outcome).inc()
        if outcome != "built":
            return
        self.reports.make_room()
        folder = self.reports.folder / f"{event.detector}-{event.subject}-{event.first_seen:.0f}"
        windows = self.data.windows
        save_windows(folder, windows.reference, {k: list(v) for k, v in windows.current.items()})
        self._building = self.launch(folder)
        if self._report is not None:
            self.metrics.report.remove(str(self._report))
        self._report = folder / "report.html"
        self.metrics.report.labels(path=str(self._report)).set(1)

    def _on_label(self, record: ScoredRecord, label: Label) -> list[DriftEvent]:
        if not self.armed:
            return []
        outcome = LabelObservation(
            label.event_time,
            label.is_fraud,
            record.score,
            label.event_time - record.event_time,
            record.card_id,
            record.terminal_id,
        )
        events = [event for detector in self._watch_labels for event in detector.update(outcome)]
        return self._count(events)

    def refresh_reference(self) -> None:
        """Take the recent traffic as the new reference (after a promote, or on demand)."""
        for detector in self.detectors:  # (labels keep theirs: they do not depend on the model)
            detector.refresh()

    def _count(self, events: list[DriftEvent]) -> list[DriftEvent]:
        for event in events:
            self.metrics.alarms.labels(detector=event.detector, subject=event.subject).inc()
            self.metrics.last_alarm.labels(detector=event.detector).set(event.first_seen)
        return events


def encode_event(event: DriftEvent, pipeline: str | None = None) -> bytes:
    """A drift event as the JSON of the ``drift-events`` topic, naming the ``pipeline``
    (the worker's app id) that raised it.

    Parameters
    ----------
    event
        The drift event.
    pipeline
        The worker's app id (None: the JSON has no ``pipeline`` field).

    Examples
    --------
    >>> encode_event(DriftEvent("psi", "txn_amount_log", 0.3, 2000, 10.0, 20.0))[:40]
    b'{"detector":"psi","subject":"txn_amount_'
    >>> json.loads(encode_event(DriftEvent("psi", "x", 0.3, 2000, 10.0, 20.0), "fs"))["pipeline"]
    'fs'
    """
    fields = asdict(event)
    if pipeline is not None:
        fields["pipeline"] = pipeline
    return json.dumps(fields, separators=(",", ":")).encode()
