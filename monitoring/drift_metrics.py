"""The drift monitor's metrics.

Two kinds:

- what happens, set as it happens (:class:`DriftMetrics`): alarms by detector and subject,
  the event time of each detector's last alarm, the Evidently reports, whether the model
  detectors are armed, the records held for event-time order;
- what the detectors currently measure (:class:`DriftStatistics`): read from the detectors
  at scrape time by a client_python custom collector, so there is nothing to keep in step.
  A statistic shows once its detector has computed it; a refreshed detector shows what its
  ``latest`` holds (0 for the CUSUMs until their new reference, nothing for a window
  statistic until its next check).

Examples
--------
>>> from prometheus_client import CollectorRegistry
>>> from monitoring.drift.config import DriftConfig
>>> from monitoring.drift.data import DataDrift
>>> registry = CollectorRegistry()
>>> data = DataDrift(DriftConfig(), ["x"])
>>> registry.register(DriftStatistics(data=data))
>>> data.latest[("psi", "x")] = 0.25
>>> registry.get_sample_value("fraudstream_feature_psi", {"feature": "x"})
0.25
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from monitoring.drift.data import DataDrift
from monitoring.drift.kswin import SampledKSWIN
from monitoring.drift.labels import LabelDrift
from monitoring.drift.mean_shift import MeanShift
from monitoring.drift.missed_fraud import MissedFraud
from monitoring.drift.prediction import PredictionDrift


@dataclass(frozen=True)
class DriftMetrics:
    """The counters and gauges the monitor sets as things happen, and the registry the
    detectors' statistics are read into (:meth:`watch`)."""

    registry: CollectorRegistry
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
            registry=registry,
            alarms=Counter(
                "fraudstream_drift_alarms",
                "Drift alarms raised, by detector and subject.",
                ["detector", "subject"],
                registry=registry,
            ),
            last_alarm=gauge(
                "fraudstream_drift_last_alarm_timestamp_seconds",
                "Event time when each detector last raised an alarm.",
                ["detector"],
            ),
            report=gauge(
                "fraudstream_drift_report_info",
                "The latest Evidently data-drift report (1 for the current path).",
                ["path"],
            ),
            reports=Counter(
                "fraudstream_drift_reports",
                "Data-drift alarms by what became of their Evidently report: built, "
                "recent (one for the same detector and feature within "
                "drift.report_every_seconds of event time), busy (the last one was "
                "still being built).",
                ["outcome"],
                registry=registry,
            ),
            armed=gauge(
                "fraudstream_drift_model_detectors_armed",
                "1 once the model has learned enough labels for the prediction, label "
                "and concept detectors to run (drift.warm_up).",
            ),
            held=gauge(
                "fraudstream_drift_held_records",
                "Scored records held back so that the detectors see them in event-time "
                "order across partitions (a worker catching up reads them days apart).",
                ["stream"],
            ),
            released_early=Counter(
                "fraudstream_drift_released_early",
                "Records given to the detectors before every partition reached their event "
                "time, because more than drift.order_max_held were held.",
                ["stream"],
                registry=registry,
            ),
        )

    def watch(self, statistics: DriftStatistics) -> None:
        """Read ``statistics`` into this registry at every scrape."""
        self.registry.register(statistics)


@dataclass(frozen=True)
class DriftStatistics(Collector):
    """The detectors' latest statistics, as gauges read at scrape time (any detector left
    out shows nothing)."""

    data: DataDrift | None = None
    kswin: SampledKSWIN | None = None
    mean_shift: MeanShift | None = None
    prediction: PredictionDrift | None = None
    labels: LabelDrift | None = None
    missed: MissedFraud | None = None

    def describe(self) -> Iterator[Metric]:
        yield from self._families().values()

    def collect(self) -> Iterator[Metric]:
        families = self._families()
        if self.data is not None:
            for (name, feature), value in list(self.data.latest.items()):
                families["psi" if name == "psi" else "ks"].add_metric([feature], value)
        for key, detector in (("kswin", self.kswin), ("mean_shift", self.mean_shift)):
            if detector is not None:
                for feature, value in list(detector.latest.items()):
                    families[key].add_metric([feature], value)
        if self.prediction is not None and self.prediction.flagged:
            if (psi := self.prediction.latest.get("prediction_psi")) is not None:
                families["score_psi"].add_metric([], psi)
            families["flagged"].add_metric([], self.prediction.flagged_share)
        if self.labels is not None:
            for key in ("fraud_rate_ratio", "label_delay_ratio", "fraud_rate_dispersion"):
                if (ratio := self.labels.latest.get(key)) is not None:
                    families[key].add_metric([], ratio)
        if self.missed is not None:
            latest = dict(self.missed.latest)
            if "missed_fraud_cusum" in latest:
                families["missed_cusum"].add_metric([], latest["missed_fraud_cusum"])
            for window in ("reference", "recent"):
                if (share := latest.get(f"missed_fraud_{window}_share")) is not None:
                    families["missed_share"].add_metric([window], share)
        yield from families.values()

    @staticmethod
    def _families() -> dict[str, GaugeMetricFamily]:
        def family(name: str, text: str, labels: Sequence[str] = ()) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, text, labels=list(labels))

        return {
            "psi": family(
                "fraudstream_feature_psi",
                "PSI of a feature, recent window against the reference.",
                ["feature"],
            ),
            "ks": family(
                "fraudstream_feature_ks",
                "Two-sample KS statistic of a feature, recent against reference.",
                ["feature"],
            ),
            "kswin": family(
                "fraudstream_feature_kswin_p_value",
                "p-value of KSWIN's latest KS test of a feature: the last day "
                "against the week before (an alarm at or below drift.kswin_alpha).",
                ["feature"],
            ),
            "mean_shift": family(
                "fraudstream_feature_mean_shift",
                "CUSUM of a feature's mean over blocks of transactions against "
                "the reference, over its threshold (derived from "
                "drift.ert_days): 1 alarms.",
                ["feature"],
            ),
            "score_psi": family(
                "fraudstream_score_psi",
                "PSI of the champion's scores, recent window against reference.",
            ),
            "flagged": family(
                "fraudstream_score_flagged_ratio",
                "Share of recent transactions scored at or above the threshold.",
            ),
            "fraud_rate_ratio": family(
                "fraudstream_fraud_rate_ratio",
                "Fraud rate among recent labels over the reference rate.",
            ),
            "fraud_rate_dispersion": family(
                "fraudstream_fraud_rate_dispersion",
                "How much more the reference fraud rate varies between blocks of labels than "
                "independent labels would (1: no clustering).",
            ),
            "label_delay_ratio": family(
                "fraudstream_label_delay_ratio",
                "Median delay of recent fraud labels over the reference.",
            ),
            "missed_cusum": family(
                "fraudstream_missed_fraud_cusum",
                "CUSUM of the share of fraud incidents the champion scored below the threshold, "
                "over its alarm threshold (drift.missed_fraud_threshold): 1 alarms.",
            ),
            "missed_share": family(
                "fraudstream_missed_fraud_share",
                "Share of fraud incidents the champion scored below the threshold, in the "
                "reference and over the recent incidents.",
                ["window"],
            ),
        }
