"""Builds every part from the settings, for every entry point (worker roles, API, CLI).

The one place that knows how settings become stores, registries, signing
keys and monitors; the entry points only ask for them.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aioredis
import redis.cluster
from prometheus_client import CollectorRegistry
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster

from features.redis_cluster_store import RedisClusterFeatureStore
from features.redis_store import RedisFeatureStore
from features.vector import TAGS, untagged
from models.registry import ModelRegistry
from models.snapshots import Fence
from monitoring.drift_metrics import DriftMetrics
from monitoring.metrics import PipelineMetrics
from monitoring.monitor import DriftMonitor
from monitoring.reports import ReportBudget
from stream.runtime.lag import GroupProgress
from stream.runtime.processing import Pipeline
from stream.runtime.roles import ALL, scoring_group
from stream.settings import Settings

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


def build_store(settings: Settings, max_connections: int | None = None) -> RedisFeatureStore:
    """The Redis feature store the settings describe (worker and API share it), with the
    socket and connect timeouts of the settings and at most ``max_connections`` (per node
    of a cluster).

    Parameters
    ----------
    settings
        Everything configurable: section ``redis`` (URL, cluster, prefix, timeouts, TTL) and
        ``features.allowed_lateness_seconds``.
    max_connections
        The client's connection pool size, per node of a cluster (None: redis-py's default).
    """
    options: dict[str, Any] = {
        "socket_timeout": settings.redis.socket_timeout_seconds,
        "socket_connect_timeout": settings.redis.connect_timeout_seconds,
        **({} if max_connections is None else {"max_connections": max_connections}),
    }
    store_options: dict[str, Any] = {
        "allowed_lateness": settings.features.allowed_lateness_seconds,
        "scored_ttl_seconds": settings.redis.scored_ttl_seconds,
    }
    if settings.redis.cluster:
        return RedisClusterFeatureStore(
            AsyncRedisCluster.from_url(settings.redis.url, **options),
            settings.redis.key_prefix,
            **store_options,
        )
    return RedisFeatureStore(
        aioredis.Redis.from_url(settings.redis.url, **options),
        settings.redis.key_prefix,
        **store_options,
    )


def sync_client(settings: Settings) -> redis.Redis | redis.cluster.RedisCluster:
    """A blocking client of the settings' Redis (or Redis Cluster), for threads."""
    if settings.redis.cluster:
        return redis.cluster.RedisCluster.from_url(settings.redis.url)
    return redis.Redis.from_url(settings.redis.url)


def build_registry(
    settings: Settings, store: RedisFeatureStore, fence: Fence | None = None
) -> ModelRegistry:
    """The model registry beside ``store``; it writes only while ``fence`` holds.

    Parameters
    ----------
    settings
        Everything configurable: the key prefix, signing key and TTL of the registry.
    store
        The feature store whose Redis client the registry shares.
    fence
        The learn lease's fence, checked on every write (None: no fence, the caller being
        the only writer or never writing, as the API).
    """
    return ModelRegistry(
        store.client,
        settings.redis.key_prefix,
        signing_key(settings),
        settings.redis.scored_ttl_seconds,
        fence=fence,
    )


def build_pipeline(
    settings: Settings,
    registry: CollectorRegistry,
    roles: frozenset[str] = ALL,
    fence: Fence | None = None,
) -> Pipeline:
    """The pipeline of ``roles`` with its Redis store, model registry (fenced by the
    learn lease's ``fence``), drift monitor (only with the monitor role) and metrics.

    Parameters
    ----------
    settings
        Everything configurable (read once, at the entry point).
    registry
        The Prometheus registry the process exposes.
    roles
        Which of score, learn and monitor this process runs (default: all).
    fence
        The learn lease's fencing token, checked on every write of the learner.
    """
    store = build_store(settings)
    metrics = PipelineMetrics.create(registry)
    store.observe = lambda op, seconds: metrics.store_seconds.labels(op=op).observe(seconds)
    progress = GroupProgress(
        settings.kafka.bootstrap_servers,
        scoring_group(settings.worker.app_id, roles),
        [settings.topics.name("transactions")],
    )
    monitor = build_monitor(settings, registry) if "monitor" in roles else None
    return Pipeline(
        settings, store, build_registry(settings, store, fence), metrics, monitor, progress, roles
    )


#: The calendar features: prediction drift rescores the reference with the current ones.
CYCLIC = TAGS["cyclic"]


def watched_features(named: Sequence[str] = ()) -> list[str]:
    """The features data drift watches: those named (``drift.features``), else every one
    but those tagged cyclic or slow (:data:`features.vector.TAGS`).

    >>> "txn_amount_log" in watched_features(), "txn_hour_sin" in watched_features()
    (True, False)
    """
    return list(named) or list(untagged("cyclic", "slow"))


def build_monitor(settings: Settings, registry: CollectorRegistry) -> DriftMonitor | None:
    """The drift detectors the settings ask for (None when drift.enabled is false).

    Parameters
    ----------
    settings
        Everything configurable: section ``drift`` and ``model.threshold``.
    registry
        The Prometheus registry the drift metrics are registered in.
    """
    drift = settings.drift
    if not drift.enabled:
        return None
    reports = (
        None
        if drift.reports_dir is None
        else ReportBudget(
            drift.reports_dir.resolve(), drift.report_every_seconds, drift.reports_max_bytes
        )
    )
    return DriftMonitor(
        drift,
        watched_features(drift.features),
        settings.model.threshold,
        DriftMetrics.create(registry),
        reports,
        launch_report,
        calendar=sorted(CYCLIC),
    )


def launch_report(folder: Path) -> subprocess.Popen[bytes]:
    """Build the Evidently report of ``folder`` in its own process (Evidently imports slowly)."""
    log.warning("data drift: building the Evidently report in %s", folder)
    with (folder / "report.log").open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "stream.cli", "drift-report", str(folder)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def api_metrics_dir(settings: Settings, fresh: bool = False) -> Path:
    """Where the API's worker processes keep their metrics (prometheus_client's
    multiprocess mode), one folder per port; ``fresh``: emptied first.

    Parameters
    ----------
    settings
        Everything configurable: ``services.state_dir`` and ``api.port`` name the folder.
    fresh
        Empty the folder first (metrics of an earlier run are not read again).
    """
    import shutil

    folder = (settings.services.state_dir / f"api-metrics-{settings.api.port}").resolve()
    if fresh:
        shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def build_api(settings: Settings) -> Any:
    """The scoring API app of the settings: its store and registry, the decision log, and
    (in a worker process of several) metrics read from all of them at each scrape."""
    import asyncio
    import os

    from prometheus_client import multiprocess

    from stream.runtime.topics import ensure_topics
    from stream.serving.app import create_app
    from stream.serving.decisions import DecisionLog

    api = settings.api
    # a connection for each request in flight, and a few for the refresher and probes
    store = build_store(settings, max_connections=api.max_in_flight + 8)
    if api.shared_redis_reads:
        store.multiplex_reads()  # (not a cluster's: its keys live on several nodes)
    registry = build_registry(settings, store)
    token = api.admin_token
    decisions = (
        DecisionLog(
            settings.kafka.bootstrap_servers,
            settings.topics.name("predictions"),
            api.decision_buffer_max,
            prepare=lambda: asyncio.to_thread(ensure_topics, settings),
        )
        if api.decision_log
        else None
    )
    exposed = None
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        exposed = CollectorRegistry()
        multiprocess.MultiProcessCollector(exposed)
    return create_app(
        store,
        registry,
        CollectorRegistry(),
        api.model_refresh_seconds,
        None if token is None else token.get_secret_value(),
        max_in_flight=api.max_in_flight,
        max_loop_lag_seconds=api.max_loop_lag_ms / 1000,
        shed_in_flight=api.shed_in_flight,
        max_body_bytes=api.max_body_bytes,
        retry_after_seconds=api.retry_after_seconds,
        batch_max=api.batch_max,
        explain_top=api.explain_top,
        decisions=decisions,
        exposed=exposed,
    )


def api_from_env() -> Any:
    """:func:`build_api` from the environment: the factory each API worker process runs."""
    from stream.settings import load_settings

    return serving(build_api(load_settings()))


def serving(app: Any) -> Any:
    """``app``, once the process that serves it has built everything it starts with: the
    garbage collector's settings of a long-running process (:mod:`stream.runtime.gc_settings`):
    everything imported frozen out of full collections, young ones rarer. With them one
    process keeps p99 <= 10 ms up to 1,000 req/s in `bench api`; without them, up to
    500 req/s, with stalls of 130-350 ms."""
    from stream.runtime.gc_settings import tune_for_streaming

    tune_for_streaming()
    return app
