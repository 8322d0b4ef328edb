"""The worker's drift monitor: detectors fed by the stream, metrics and events out.

:class:`DriftMonitor` receives every newly scored transaction (its vector
and score) and every learned label (with the score it was given), feeds the
detectors of :mod:`monitoring.drift` with event times, keeps the
Prometheus gauges current, and returns the drift events for the
``drift-events`` topic.

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
>>> registry.get_sample_value("fraudstream_feature_psi", {"feature": "x"}) > 1
True
"""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from features.events import Label
from features.store import ScoredRecord
from monitoring.drift.base import Detector, DriftEvent, Outcome, Scorer, Scoring
from monitoring.drift.concept import ConceptDrift
from monitoring.drift.config import DriftConfig
from monitoring.drift.data import DataDrift
from monitoring.drift.kswin import SampledKSWIN
from monitoring.drift.labels import LabelDrift
from monitoring.drift.mean_shift import MeanShift
from monitoring.drift.missed_fraud import MissedFraud
from monitoring.drift.prediction import PredictionDrift
from monitoring.ordering import EventTimeOrder
from monitoring.reports import ReportBudget, save_windows


@dataclass(frozen=True)
class DriftMetrics:
    """The drift gauges and alarm counters."""

    feature_psi: Gauge
    feature_ks: Gauge
    feature_kswin_p_value: Gauge
    feature_mean_shift: Gauge
    score_psi: Gauge
    flagged_share: Gauge
    fraud_rate_ratio: Gauge
    fraud_rate_dispersion: Gauge
    label_delay_ratio: Gauge
    missed_fraud_cusum: Gauge
    missed_fraud_share: Gauge
    alarms: Counter
    last_alarm: Gauge
    report: Gauge
    reports: Counter
    armed: Gauge
    held: Gauge
    released_early: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> DriftMetrics:
        def gauge(name: str, text: str, labels: Sequence[str] = ()) -> Gauge:
            return Gauge(name, text, list(labels), registry=registry)

        return cls(
            feature_psi=gauge("fraudstream_feature_psi",
                              "PSI of a feature, recent window against the reference.",
                              ["feature"]),
            feature_ks=gauge("fraudstream_feature_ks",
                             "Two-sample KS statistic of a feature, recent against reference.",
                             ["feature"]),
            feature_kswin_p_value=gauge(
                "fraudstream_feature_kswin_p_value",
                "p-value of KSWIN's latest KS test of a feature: the last day against the "
                "week before (an alarm at or below drift.kswin_alpha).", ["feature"]),
            feature_mean_shift=gauge(
                "fraudstream_feature_mean_shift",
                "CUSUM of a feature's mean over blocks of transactions against the reference, "
                "over its threshold (derived from drift.ert_days): 1 alarms.", ["feature"]),
            score_psi=gauge("fraudstream_score_psi",
                            "PSI of the champion's scores, recent window against reference."),
            flagged_share=gauge("fraudstream_score_flagged_ratio",
                                "Share of recent transactions scored at or above the threshold."),
            fraud_rate_ratio=gauge("fraudstream_fraud_rate_ratio",
                                   "Fraud rate among recent labels over the reference rate."),
            fraud_rate_dispersion=gauge(
                "fraudstream_fraud_rate_dispersion",
                "How much more the reference fraud rate varies between blocks of labels than "
                "independent labels would (1: no clustering)."),
            label_delay_ratio=gauge("fraudstream_label_delay_ratio",
                                    "Median delay of recent fraud labels over the reference."),
            missed_fraud_cusum=gauge(
                "fraudstream_missed_fraud_cusum",
                "CUSUM of the share of fraud incidents the champion scored below the threshold, "
                "over its alarm threshold (drift.missed_fraud_threshold): 1 alarms."),
            missed_fraud_share=gauge(
                "fraudstream_missed_fraud_share",
                "Share of fraud incidents the champion scored below the threshold, in the "
                "reference and over the recent incidents.", ["window"]),
            alarms=Counter("fraudstream_drift_alarms",
                           "Drift alarms raised, by detector and subject.",
                           ["detector", "subject"], registry=registry),
            last_alarm=gauge("fraudstream_drift_last_alarm_timestamp_seconds",
                             "Event time when each detector last raised an alarm.",
                             ["detector"]),
            report=gauge("fraudstream_drift_report_info",
                         "The latest Evidently data-drift report (1 for the current path).",
                         ["path"]),
            reports=Counter("fraudstream_drift_reports",
                            "Data-drift alarms by what became of their Evidently report: built, "
                            "recent (one for the same detector and feature within "
                            "drift.report_every_seconds of event time), busy (the last one was "
                            "still being built).", ["outcome"], registry=registry),
            armed=gauge("fraudstream_drift_model_detectors_armed",
                        "1 once the model has learned enough labels for the prediction, label "
                        "and concept detectors to run (drift.warm_up)."),
            held=gauge("fraudstream_drift_held_records",
                       "Scored records held back so that the detectors see them in event-time "
                       "order across partitions (a worker catching up reads them days apart).",
                       ["stream"]),
            released_early=Counter(
                "fraudstream_drift_released_early",
                "Records given to the detectors before every partition reached their event "
                "time, because more than drift.order_max_held were held.",
                ["stream"], registry=registry),
        )


class DriftMonitor:
    """Every detector of one worker."""

    def __init__(self, config: DriftConfig, features: Sequence[str], threshold: float,
                 metrics: DriftMetrics, reports: ReportBudget | None = None,
                 launch: Callable[[Path], Any] | None = None,
                 calendar: Sequence[str] = ()) -> None:
        self.config = config
        #: The prediction, label and concept detectors run once the model is warm ...
        self.armed = config.warm_up == 0
        self._learned = 0
        #: ... and the feature state old enough (event time of its first transaction).
        self._state_start: float | None = None
        self.data = DataDrift(config, features)
        self._published = 0
        self.kswin = SampledKSWIN(config, config.kswin_features)
        self._kswin_published = 0
        self.mean_shift = MeanShift(config, config.mean_shift_features)
        self._mean_shift_published = 0
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
        self.metrics = metrics
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
        self._scorer: Scorer | None = None
        self._early: dict[str, int] = {}  # released_early already counted, per stream

    @property
    def detectors(self) -> tuple[Detector[Scoring] | Detector[Outcome], ...]:
        """Every detector: those of scored transactions, then those of labels."""
        return (self.data, self.kswin, self.mean_shift, self.prediction, self.labels,
                self.concept, self.missed)

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
        return self._state_start is None or \
            at - self._state_start >= self.config.state_maturity_days * 86400

    def on_scored(self, record: ScoredRecord, scorer: Scorer | None = None,
                  source: Hashable = None, behind: bool = False) -> list[DriftEvent]:
        """A newly scored transaction (never a redelivery), and the model's current scorer.

        ``source`` is its partition, and ``behind`` whether that partition had
        more records waiting: the detectors see it once every partition behind
        has reached its event time.
        """
        return self.on_scored_batch([(record, source, behind)], scorer)

    def on_scored_batch(self, batch: Sequence[tuple[ScoredRecord, Hashable, bool]],
                        scorer: Scorer | None = None) -> list[DriftEvent]:
        """:meth:`on_scored` for a fetched batch of ``(record, source, behind)``."""
        self._scorer = scorer
        released = self._scored.add_many(
            (record.event_time, record, source, behind) for record, source, behind in batch)
        return self._scored_in_order(released)

    def on_label(self, record: ScoredRecord, label: Label) -> list[DriftEvent]:
        """A learned label, with the record its transaction was scored with.

        Labels are not held for order here: the worker reads them in step with the
        stream (:mod:`stream.runtime.flow`), and learns each once the stream has
        reached it, so they come in event-time order up to the flow's leads.
        """
        return self._on_label(record, label)

    def forget(self, sources: Iterable[Hashable]) -> list[DriftEvent]:
        """The worker no longer reads ``sources`` (partitions revoked): stop waiting for them."""
        return self._scored_in_order(self._scored.forget(list(sources)))

    def _scored_in_order(self, released: list[ScoredRecord]) -> list[DriftEvent]:
        events = [e for record in released for e in self._on_scored(record, self._scorer)]
        self._held("scored", len(self._scored), self._scored.released_early)
        if self.prediction.flagged:  # the prediction gauges once a batch, not once a record
            score = self.prediction.latest.get("prediction_psi")
            if score is not None:
                self.metrics.score_psi.set(score)
            self.metrics.flagged_share.set(self.prediction.flagged_share)
        return events

    def _held(self, stream: str, held: int, released_early: int) -> None:
        self.metrics.held.labels(stream=stream).set(held)
        counted = self._early.get(stream, 0)
        if released_early > counted:
            self.metrics.released_early.labels(stream=stream).inc(released_early - counted)
            self._early[stream] = released_early

    def _on_scored(self, record: ScoredRecord, scorer: Scorer | None) -> list[DriftEvent]:
        if not self._mature(record.event_time):
            return []  # no detector takes a reference from a state still filling
        if not self.armed and self._learned >= self.config.warm_up:
            self.armed = True
            self.metrics.armed.set(1)
        seen = Scoring(record.event_time, record.features, record.score, scorer)
        watching: tuple[Detector[Scoring], ...] = (self.data, self.kswin, self.mean_shift)
        if self.armed:
            watching += (self.prediction,)
        events = [event for detector in watching for event in detector.update(seen)]
        if self.data.checks != self._published:  # the gauges move only when a check ran
            self._published = self.data.checks
            for (detector, feature), value in self.data.latest.items():
                gauge = self.metrics.feature_psi if detector == "psi" else self.metrics.feature_ks
                gauge.labels(feature=feature).set(value)
        if self.kswin.samples != self._kswin_published:
            self._kswin_published = self.kswin.samples
            for feature, p_value in self.kswin.latest.items():
                self.metrics.feature_kswin_p_value.labels(feature=feature).set(p_value)
        if self.mean_shift.blocks != self._mean_shift_published:
            self._mean_shift_published = self.mean_shift.blocks
            for feature, value in self.mean_shift.latest.items():
                self.metrics.feature_mean_shift.labels(feature=feature).set(value)
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
        outcome = Outcome(label.event_time, label.is_fraud, record.score,
                          label.event_time - record.event_time, record.card_id,
                          record.terminal_id)
        watching: tuple[Detector[Outcome], ...] = (self.labels, self.concept, self.missed)
        events = [event for detector in watching for event in detector.update(outcome)]
        for name, gauge in (("fraud_rate_ratio", self.metrics.fraud_rate_ratio),
                            ("label_delay_ratio", self.metrics.label_delay_ratio),
                            ("fraud_rate_dispersion", self.metrics.fraud_rate_dispersion)):
            if name in self.labels.latest:
                gauge.set(self.labels.latest[name])
        if label.is_fraud:
            self._publish_missed()
        return self._count(events)

    def _publish_missed(self) -> None:
        latest = self.missed.latest
        if "missed_fraud_cusum" in latest:
            self.metrics.missed_fraud_cusum.set(latest["missed_fraud_cusum"])
        for window, name in (("reference", "missed_fraud_reference_share"),
                             ("recent", "missed_fraud_recent_share")):
            if name in latest:
                self.metrics.missed_fraud_share.labels(window=window).set(latest[name])

    def refresh_reference(self) -> None:
        """Take the recent traffic as the new reference (after a promote, or on demand)."""
        for detector in self.detectors:  # (labels keep theirs: they do not depend on the model)
            detector.refresh()
        self.metrics.missed_fraud_cusum.set(0)
        for feature in self.mean_shift.features:  # no statistic until the new reference
            self.metrics.feature_mean_shift.labels(feature=feature).set(0)

    def _count(self, events: list[DriftEvent]) -> list[DriftEvent]:
        for event in events:
            self.metrics.alarms.labels(detector=event.detector, subject=event.subject).inc()
            self.metrics.last_alarm.labels(detector=event.detector).set(event.first_seen)
        return events


def encode_event(event: DriftEvent, pipeline: str | None = None) -> bytes:
    """A drift event as the JSON of the ``drift-events`` topic, naming the ``pipeline``
    (the worker's app id) that raised it.

    >>> encode_event(DriftEvent("psi", "txn_amount_log", 0.3, 2000, 10.0, 20.0))[:40]
    b'{"detector":"psi","subject":"txn_amount_'
    >>> json.loads(encode_event(DriftEvent("psi", "x", 0.3, 2000, 10.0, 20.0), "fs"))["pipeline"]
    'fs'
    """
    fields = asdict(event)
    if pipeline is not None:
        fields["pipeline"] = pipeline
    return json.dumps(fields, separators=(",", ":")).encode()
