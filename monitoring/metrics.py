"""Prometheus metrics of the worker and the API, built on an injected registry.

Nothing is registered at import: each process builds its metrics once with
``*.create(registry)`` and passes them down; tests build a fresh
``CollectorRegistry`` and read samples back.

Examples
--------
>>> from prometheus_client import CollectorRegistry
>>> registry = CollectorRegistry()
>>> m = PipelineMetrics.create(registry)
>>> m.events_in.labels(topic="transactions").inc()
>>> registry.get_sample_value("fraudstream_events_in_total", {"topic": "transactions"})
1.0
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

#: Seconds; fine-grained below 10 ms where scoring lives.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


@dataclass(frozen=True)
class PipelineMetrics:
    """What the stream worker reports."""

    events_in: Counter
    scores_out: Counter
    duplicates: Counter
    dead_letters: Counter
    errors: Counter
    latency: Histogram
    labels_learned: Counter
    model_version: Gauge
    models_refused: Gauge
    quality: QualityMetrics
    store_seconds: Histogram
    newest_event: Gauge
    redis_memory: Gauge
    redis_keys: Gauge
    labels_waiting: Gauge
    labels_paused: Gauge
    labels_pauses: Counter
    scoring_held: Gauge
    scoring_holds: Counter
    scoring_hold_stalls: Counter
    loop_lag: Histogram

    @classmethod
    def create(cls, registry: CollectorRegistry) -> PipelineMetrics:
        metrics = cls._create(registry)
        # every series exists from the start (at 0), so dashboards and alerts see zeros
        for topic in ("transactions", "labels"):
            metrics.events_in.labels(topic=topic)
            metrics.duplicates.labels(topic=topic)
        for reason in ("invalid_record", "too_late", "processing_error"):
            metrics.dead_letters.labels(topic="transactions", reason=reason)
        for reason in ("invalid_record", "unknown_transaction"):
            metrics.dead_letters.labels(topic="labels", reason=reason)
        for stage in ("score", "infrastructure"):
            metrics.errors.labels(stage=stage)
        return metrics

    @classmethod
    def _create(cls, registry: CollectorRegistry) -> PipelineMetrics:
        return cls(
            quality=QualityMetrics.create(registry),
            store_seconds=Histogram(
                "fraudstream_feature_store_seconds",
                "Round trips to the feature store, by operation (apply, save).",
                ["op"],
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
            newest_event=Gauge(
                "fraudstream_feature_newest_event_timestamp_seconds",
                "Event time of the newest transaction folded into the features.",
                registry=registry,
            ),
            redis_memory=Gauge(
                "fraudstream_redis_used_memory_bytes",
                "Memory Redis reports in use.",
                registry=registry,
            ),
            redis_keys=Gauge(
                "fraudstream_redis_keys",
                "Keys in the Redis database.",
                registry=registry,
            ),
            labels_waiting=Gauge(
                "fraudstream_labels_waiting",
                "Labels that came before their transaction was scored, kept until it is.",
                registry=registry,
            ),
            labels_paused=Gauge(
                "fraudstream_labels_paused_partitions",
                "Labels partitions not read now: ahead of the stream in event time, or too "
                "many labels wait (stream.runtime.flow).",
                registry=registry,
            ),
            labels_pauses=Counter(
                "fraudstream_labels_pauses",
                "Times a labels partition was paused (ahead of the stream, or too many wait).",
                registry=registry,
            ),
            scoring_held=Gauge(
                "fraudstream_scoring_held",
                "1 while this scorer waits for the labels: its next transaction is more than "
                "worker.scoring_lead_seconds past the labels read (stream.runtime.flow).",
                registry=registry,
            ),
            scoring_holds=Counter(
                "fraudstream_scoring_holds",
                "Times this scorer waited for the labels to catch up.",
                registry=registry,
            ),
            scoring_hold_stalls=Counter(
                "fraudstream_scoring_hold_stalls",
                "Times this scorer stopped waiting for the labels because their frontier "
                "did not move, or the consumer's buffer of transactions was full (the "
                "labels then wait behind it).",
                registry=registry,
            ),
            events_in=Counter(
                "fraudstream_events_in",
                "Records consumed, by topic.",
                ["topic"],
                registry=registry,
            ),
            scores_out=Counter(
                "fraudstream_scores_out",
                "Scores published to the scores topic.",
                registry=registry,
            ),
            duplicates=Counter(
                "fraudstream_duplicates",
                "Redelivered records recognised and not re-applied.",
                ["topic"],
                registry=registry,
            ),
            dead_letters=Counter(
                "fraudstream_dead_letters",
                "Records sent to the dead-letter topic, by reason.",
                ["topic", "reason"],
                registry=registry,
            ),
            errors=Counter(
                "fraudstream_errors",
                "Unexpected processing errors, by stage.",
                ["stage"],
                registry=registry,
            ),
            latency=Histogram(
                "fraudstream_processing_seconds",
                "Time to process one record, by stage.",
                ["stage"],
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
            labels_learned=Counter(
                "fraudstream_labels_learned",
                "Labels the learner taught the model.",
                registry=registry,
            ),
            model_version=Gauge(
                "fraudstream_model_version",
                "Version of the model currently scoring.",
                registry=registry,
            ),
            models_refused=Gauge(
                "fraudstream_models_refused",
                "Champion versions this process refused to load: their signature does not "
                "match (someone wrote the registry without the signing key).",
                registry=registry,
            ),
            loop_lag=Histogram(
                "fraudstream_event_loop_lag_seconds",
                "How late the worker's event loop ran a callback due then: the longest "
                "any agent or timer kept the loop from everything else.",
                buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
                registry=registry,
            ),
        )


@dataclass(frozen=True)
class ApiMetrics:
    """What the scoring API reports."""

    requests: Counter
    latency: Histogram
    model_version: Gauge
    shed: Counter
    shedding: Gauge
    models_refused: Gauge
    decisions_sent: Counter
    decisions_dropped: Counter
    decisions_buffered: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry) -> ApiMetrics:
        return cls(
            decisions_sent=Counter(
                "fraudstream_api_decisions_sent",
                "API decisions acknowledged by Kafka on the predictions topic (the decision log).",
                registry=registry,
            ),
            decisions_dropped=Counter(
                "fraudstream_api_decisions_dropped",
                "API decisions dropped from the decision "
                "log: its buffer (api.decision_buffer_max) was full, Kafka not taking them.",
                registry=registry,
            ),
            decisions_buffered=Gauge(
                "fraudstream_api_decisions_buffered",
                "API decisions waiting in the decision log's buffer for Kafka.",
                registry=registry,
                multiprocess_mode="livesum",
            ),
            shed=Counter(
                "fraudstream_api_shed",
                "Requests answered 503 at once by load shedding: api.max_in_flight requests "
                "were in flight, or the process was past its CPU (api.shed_in_flight).",
                registry=registry,
            ),
            shedding=Gauge(
                "fraudstream_api_shedding",
                "API processes shedding load past their CPU (api.shed_in_flight requests "
                "at most in flight until the load fits again).",
                registry=registry,
                multiprocess_mode="livesum",
            ),
            models_refused=Gauge(
                "fraudstream_api_models_refused",
                "Champion versions the API refused to load: their signature does not match.",
                registry=registry,
                multiprocess_mode="livemax",
            ),
            requests=Counter(
                "fraudstream_api_requests",
                "HTTP requests, by route and status code.",
                ["route", "status"],
                registry=registry,
            ),
            latency=Histogram(
                "fraudstream_api_request_seconds",
                "HTTP request latency, by route.",
                ["route"],
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
            model_version=Gauge(
                "fraudstream_api_model_version",
                "Version of the model the API scores with.",
                registry=registry,
                multiprocess_mode="livemax",
            ),
        )


#: Label delays, seconds: an hour to eight weeks.
DELAY_BUCKETS = tuple(h * 3600.0 for h in (1, 6, 12, 24, 48, 96, 168, 336, 672, 1344))


@dataclass
class QualityMetrics:
    """Prequential model quality: one gauge per (role, model, version, metric, window).

    Only the current version of each model is exported: the previous
    version's series are removed when a new one is reported, so the number of
    series stays flat while versions roll.

    Examples
    --------
    >>> from prometheus_client import CollectorRegistry
    >>> registry = CollectorRegistry()
    >>> q = QualityMetrics.create(registry)
    >>> q.export("champion", "lr", 3, {"average_precision_window": 0.5})
    >>> registry.get_sample_value("fraudstream_model_quality", {"role": "champion",
    ...     "model": "lr", "version": "3", "metric": "average_precision", "window": "window"})
    0.5
    """

    quality: Gauge
    label_delay: Histogram
    _exported: dict[str, list[tuple[str, ...]]]

    @classmethod
    def create(cls, registry: CollectorRegistry) -> QualityMetrics:
        return cls(
            quality=Gauge(
                "fraudstream_model_quality",
                "Prequential quality of a model version (each score recorded before its label).",
                ["role", "model", "version", "metric", "window"],
                registry=registry,
            ),
            label_delay=Histogram(
                "fraudstream_label_delay_seconds",
                "Seconds from a transaction to the arrival of its label.",
                buckets=DELAY_BUCKETS,
                registry=registry,
            ),
            _exported={},
        )

    def export(self, role: str, model: str, version: int, report: dict[str, float]) -> None:
        """Set the gauges of ``role`` from a :meth:`models.evaluation.Prequential.report`,
        removing those of the version it last exported.

        Parameters
        ----------
        role
            ``champion`` or ``challenger:<name>``.
        model
            The model's name.
        version
            The model's version.
        report
            Metric name -> value; a name ending in ``_window`` or ``_all`` gives the window
            label (otherwise ``all``).
        """
        for labels in self._exported.pop(role, []):
            self.quality.remove(*labels)
        exported: list[tuple[str, ...]] = []
        for key, value in report.items():
            metric, window = _split(key)
            labels = (role, model, str(version), metric, window)
            self.quality.labels(*labels).set(value)
            exported.append(labels)
        self._exported[role] = exported


def _split(key: str) -> tuple[str, str]:
    for window in ("window", "all"):
        if key.endswith(f"_{window}"):
            return key.removesuffix(f"_{window}"), window
    return key, "all"
