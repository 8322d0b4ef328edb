"""The worker entry point: build every part from settings and run Faust."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import faust
from prometheus_client import CollectorRegistry, start_http_server

from features.redis_store import RedisFeatureStore
from features.vector import FEATURE_NAMES
from models.registry import ModelRegistry
from monitoring.metrics import PipelineMetrics
from monitoring.monitor import DriftMetrics, DriftMonitor
from stream.app import create_app
from stream.gc_settings import tune_for_streaming
from stream.lag import GroupProgress, watch_lag
from stream.processing import Pipeline
from stream.settings import Settings
from stream.topics import ensure_topics

log = logging.getLogger(__name__)


class ConfigError(RuntimeError):
    """A setting that is missing or unusable, named in the message."""


def signing_key(settings: Settings) -> bytes:
    """The snapshot signing key, or a clear error naming the setting."""
    key = settings.model.signing_key
    if key is None or not key.get_secret_value():
        raise ConfigError(
            "FRAUDSTREAM_MODEL__SIGNING_KEY is not set: model snapshots must be signed "
            "(any long random string; `make demo` generates one)"
        )
    return key.get_secret_value().encode()


def build_store(settings: Settings) -> RedisFeatureStore:
    """The Redis feature store the settings describe (worker and API share it)."""
    return RedisFeatureStore.from_url(
        settings.redis.url, settings.redis.key_prefix,
        allowed_lateness=settings.features.allowed_lateness_seconds,
        scored_ttl_seconds=settings.redis.scored_ttl_seconds,
    )


def build_pipeline(settings: Settings, registry: CollectorRegistry) -> Pipeline:
    """The pipeline with its Redis store, model registry and metrics."""
    store = build_store(settings)
    metrics = PipelineMetrics.create(registry)
    store.observe = lambda op, seconds: metrics.store_seconds.labels(op=op).observe(seconds)
    models = ModelRegistry(store.client, settings.redis.key_prefix, signing_key(settings),
                           settings.redis.scored_ttl_seconds)
    progress = GroupProgress(settings.kafka.bootstrap_servers, settings.worker.app_id,
                             [settings.topics.name("transactions")])
    return Pipeline(settings, store, models, metrics, build_monitor(settings, registry), progress)


#: Calendar features cycle by design (hour, weekday): watching them would only
#: report the time of day.
CYCLIC = frozenset({"txn_hour_sin", "txn_hour_cos", "txn_dow_sin", "txn_dow_cos",
                    "txn_is_night", "txn_is_weekend"})
#: Features that keep growing for a week or a month after a start from empty state
#: (7- and 30-day windows): watched only when named in ``drift.features``.
SLOW = frozenset(f for f in FEATURE_NAMES if f.endswith(("_7d", "_30d")))


def watched_features(named: Sequence[str] = ()) -> list[str]:
    """The features data drift watches: those named (``drift.features``), else every one
    but the calendar ones and the slow ones.

    >>> "txn_amount_log" in watched_features(), "txn_hour_sin" in watched_features()
    (True, False)
    """
    return list(named) or [f for f in FEATURE_NAMES if f not in CYCLIC | SLOW]


def build_monitor(settings: Settings, registry: CollectorRegistry) -> DriftMonitor | None:
    """The drift detectors the settings ask for (None when drift.enabled is false)."""
    drift = settings.drift
    if not drift.enabled:
        return None
    reports = None if drift.reports_dir is None else drift.reports_dir.resolve()
    return DriftMonitor(drift.detector_config(), watched_features(drift.features),
                        settings.model.threshold,
                        DriftMetrics.create(registry), reports, launch_report,
                        calendar=sorted(CYCLIC))


def launch_report(folder: Path) -> subprocess.Popen[bytes]:
    """Build the Evidently report of ``folder`` in its own process (Evidently imports slowly)."""
    log.warning("data drift: building the Evidently report in %s", folder)
    with (folder / "report.log").open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "stream.cli", "drift-report", str(folder)],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def run_worker(settings: Settings, loglevel: str = "info") -> None:
    """Create the topics, serve ``/metrics`` and run the Faust worker until stopped."""
    registry = CollectorRegistry()
    pipeline = build_pipeline(settings, registry)
    created = ensure_topics(settings)
    if created:
        log.info("created topics %s", ", ".join(created))
    start_http_server(settings.worker.metrics_port, settings.worker.metrics_host, registry)
    watch_lag(settings.kafka.bootstrap_servers, settings.worker.app_id,
              [settings.topics.name("transactions"), settings.topics.name("labels")], registry)
    app = create_app(settings, pipeline)
    tune_for_streaming()  # start-up is done: freeze it, and collect young objects less often
    faust.Worker(app, loglevel=loglevel, quiet=True).execute_from_commandline()
