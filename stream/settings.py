"""Settings: the only module that reads the environment.

Every address, port, topic and tunable of fraudstream lives here, in frozen
nested sections. Values come from ``FRAUDSTREAM_<SECTION>__<FIELD>``
environment variables (or a ``.env`` file in the working directory), with
the documented defaults below. Build them once at the entry point with
:func:`load_settings` and pass them down.

Examples
--------
>>> s = Settings()
>>> s.kafka.bootstrap_servers
'127.0.0.1:9092'
>>> s.topics.transactions
'transactions'
>>> s.redis.url
'redis://127.0.0.1:6379/0'
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from features.vector import FEATURE_NAMES
from monitoring.drift.config import DriftConfig

Port = Annotated[int, Field(ge=1, le=65535)]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class KafkaSettings(_Section):
    """Where the Kafka cluster is, for producers, the worker and tests."""

    bootstrap_servers: str = Field("127.0.0.1:9092", min_length=1)
    #: Partitions for topics the project creates (transactions, labels, scores).
    partitions: int = Field(4, ge=1, le=1024)
    replication_factor: int = Field(1, ge=1)
    #: The worker's producer: how long a batch waits for more records before it is sent,
    #: and its largest size (a worker hands each fetched batch's outputs over at once,
    #: one producer batch per partition: ``stream.runtime.output``).
    producer_linger_ms: int = Field(0, ge=0, le=60_000)
    producer_batch_bytes: int = Field(16_384, ge=1_024, le=16 * 1024 * 1024)
    #: The most a worker's consumer fetches of one partition at a time (Kafka's
    #: ``max.partition.fetch.bytes``): it holds about that much per partition it reads,
    #: fetched ahead. 1 MB (Kafka's default) kept 62 MB in hand on the 1.7 M event run.
    consumer_fetch_bytes: int = Field(262_144, ge=16_384, le=64 * 1024 * 1024)


class TopicSettings(_Section):
    """Topic names. ``prefix`` is prepended to all of them (tests isolate by it)."""

    prefix: str = ""
    transactions: str = "transactions"
    labels: str = "labels"
    scores: str = "scores"
    dead_letters: str = "dead-letters"
    drift_events: str = "drift-events"
    #: Internal: scored records with their vectors, from scorers to a separate monitor.
    scored: str = "scored"
    #: Internal: learned labels with the record they were learned from, learner to monitor.
    learned: str = "learned"
    #: The API's decision log: every answer it gave (:mod:`stream.serving.decisions`).
    predictions: str = "predictions"

    def name(self, topic: str) -> str:
        """The full name of ``topic`` (one of the fields) with the prefix."""
        return f"{self.prefix}{getattr(self, topic)}"


class RedisSettings(_Section):
    """The Redis that holds feature state, scored vectors and model snapshots."""

    url: str = "redis://127.0.0.1:6379/0"
    #: ``url`` is a node of a Redis Cluster: every process uses redis-py's cluster client,
    #: and the feature store updates a transaction's card and terminal in their own
    #: slots (``features.redis_cluster_store``). The key layout is the same either way.
    cluster: bool = False
    #: Prepended to every key; the feature-set version is added after it. No braces:
    #: they would change the keys' hash tags (``features.keys``).
    key_prefix: str = Field("fs", min_length=1)
    #: How long a scored transaction's feature vector is kept for its late label.
    scored_ttl_seconds: int = Field(90 * 86400, ge=60)
    #: A command without a reply for this long fails (a hung or paused Redis): the worker
    #: retries it, the API answers 503. Longer than the slowest script of a batch.
    socket_timeout_seconds: float = Field(5.0, gt=0, le=300)
    #: Connecting gives up after this long (Redis down or unreachable).
    connect_timeout_seconds: float = Field(2.0, gt=0, le=60)

    @field_validator("key_prefix")
    @classmethod
    def _no_braces(cls, prefix: str) -> str:
        if "{" in prefix or "}" in prefix:
            raise ValueError("must not contain '{' or '}' (they would change the keys' hash tags)")
        return prefix


class FeatureSettings(_Section):
    """Feature state."""

    #: A transaction older than its card's newest event by more than this is
    #: dead-lettered (``too_late``); within it, it is folded in at its place.
    allowed_lateness_seconds: float = Field(3600.0, ge=0, le=7 * 86400)
    #: A transaction more than this far past both the stream's newest event and the
    #: clock is dead-lettered (``invalid_record``, ``event_time``): one far-future event
    #: would otherwise make every later transaction of its card too late.
    max_future_seconds: float = Field(3600.0, gt=0, le=365 * 86400)


class DriftSettings(DriftConfig):
    """Drift detection: the detectors' windows and thresholds (:class:`DriftConfig`, defined
    once in monitoring/drift/config.py with their bounds; these settings are one and are
    passed to the detectors as they are), and what the worker does around them."""

    enabled: bool = True
    #: Features watched for data drift (empty: all but the calendar ones, which cycle, and
    #: the 7- and 30-day windows, which keep growing for a month after an empty start).
    features: tuple[str, ...] = ()
    #: On a data-drift alarm, save both windows and build an Evidently report here ...
    reports_dir: Path | None = Path(".state/reports")
    #: ... at most one per detector and feature per this many seconds of event time ...
    report_every_seconds: float = Field(86_400.0, ge=0)
    #: ... removing the oldest reports to keep the folder under this size.
    reports_max_bytes: int = Field(200 * 1024 * 1024, ge=1_000_000)
    #: Automatic response to concept drift: start a challenger of this model (None: off).
    auto_challenger: str | None = None
    #: ... trained on this many of the latest labelled vectors ...
    auto_recent_labels: int = Field(5000, ge=0)
    #: ... and promote it when its AP over the last N labels both scored beats the
    #: champion's on them by this margin, with a paired bootstrap p-value at most alpha.
    #: (Measured with ``fraudstream scorecard --promote``: on 2,000 labels at p <= 0.05,
    #: tested every 1,000, a batch challenger and the champion swapped five times in
    #: one 56-day run, and the served model was worse than either.)
    auto_promote_labels: int = Field(10_000, ge=10)
    auto_promote_margin: float = Field(0.02, ge=-1, le=1)
    auto_promote_alpha: float = Field(0.01, gt=0, le=1)
    #: Hold the configured challengers (``model.challengers``) to the same rule and promote
    #: one that passes it (``stream.runtime.response``).
    auto_promote_challengers: bool = False

    @field_validator("features", "kswin_features", "mean_shift_features")
    @classmethod
    def _known_features(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [n for n in names if n not in FEATURE_NAMES]
        if unknown:
            raise ValueError(
                f"unknown feature(s) {', '.join(unknown)}; the features are "
                f"{', '.join(FEATURE_NAMES)}"
            )
        return names

    @model_validator(mode="after")
    def _kswin_fits(self) -> DriftSettings:
        if self.kswin_stat_size * 2 > self.kswin_window:
            raise ValueError(
                f"kswin_stat_size ({self.kswin_stat_size}) must be at most half "
                f"of kswin_window ({self.kswin_window}): KSWIN draws as many "
                "older samples"
            )
        return self


class WorkerSettings(_Section):
    """The Faust stream worker."""

    app_id: str = "fraudstream-worker"
    #: A dead letter keeps at most this much of the record's value (then its length and
    #: SHA-256): under Kafka's 1 MB request limit even when JSON escapes every byte of
    #: it (a control character takes 6).
    dead_letter_value_max_bytes: int = Field(64 * 1024, ge=256, le=128 * 1024)
    #: Records are handled in batches of up to this many (an equal share from each
    #: partition), handed on as soon as they are fetched ...
    batch_max: int = Field(500, ge=1, le=10_000)
    #: glibc's malloc maps requests of this many bytes and more on their own, handed back
    #: when freed, and trims its heaps at twice that free (0: glibc's own moving
    #: thresholds, whose heaps kept 240 MB on the 1.7 M event run; stream.runtime.allocator).
    malloc_mmap_threshold_bytes: int = Field(1024 * 1024, ge=0, le=32 * 1024 * 1024)
    #: ... and a consumer with nothing fetched waits this long for records (0.5 s at
    #: least: it is woken as soon as they come) before looking again.
    batch_within_seconds: float = Field(0.01, gt=0, le=5)
    #: How often waiting labels (ahead of the stream or of their transaction) are tried.
    label_retry_seconds: float = Field(1.0, gt=0, le=60)
    #: Labels waiting (ahead of the stream or of their transaction) before the learner
    #: stops reading the labels topic; it reads again below half of it.
    labels_waiting_max: int = Field(5_000, ge=2, le=10_000_000)
    #: A labels partition is not read while its newest label is more than this far
    #: (event time) ahead of the stream; it is read again once the stream reaches it.
    labels_lead_seconds: float = Field(600.0, ge=0, le=30 * 86_400)
    #: A scorer holds its transactions while its stream time is more than this far (event
    #: time) past the labels the learner has read, when labels are still waiting in Kafka
    #: (a replay, a catch-up): no transaction is scored by a model that missed labels that
    #: came before it (``stream.runtime.flow``). Live, nothing is held.
    scoring_lead_seconds: float = Field(3_600.0, ge=0, le=30 * 86_400)
    #: A scorer reads its transactions partitions in step in event time: one more than this
    #: many seconds ahead of the slowest that still has records in Kafka is left unread
    #: until that one catches up (``stream.runtime.flow.PartitionAlign``; 0: off). A
    #: terminal's features then see every partition's traffic, as live.
    partition_lead_seconds: float = Field(3_600.0, ge=0, le=30 * 86_400)
    #: Port of the worker's Prometheus ``/metrics`` endpoint on ``metrics_host``.
    metrics_host: str = "127.0.0.1"
    metrics_port: Port = 8001
    #: A single-active role's (learn, monitor) lease lasts this long unless renewed (every
    #: third of it): a standby takes over this long after the active instance died.
    lease_seconds: float = Field(5.0, ge=1, le=300)
    #: How often a standby checks whether the lease is free.
    standby_poll_seconds: float = Field(0.5, gt=0, le=60)
    #: Kafka consumer session: a member that sends no heartbeat for this long is dead and
    #: its partitions go to the others (the broker accepts 6 to 300 s by default).
    session_timeout_seconds: float = Field(10.0, ge=6, le=300)
    #: How often a member sends its heartbeat (at most a third of the session).
    heartbeat_seconds: float = Field(3.0, gt=0, le=100)

    @model_validator(mode="after")
    def _heartbeat_fits_session(self) -> WorkerSettings:
        if self.heartbeat_seconds * 3 > self.session_timeout_seconds:
            raise ValueError(
                "heartbeat_seconds: must be at most a third of "
                f"session_timeout_seconds ({self.session_timeout_seconds:g})"
            )
        return self


#: The shortest admin token accepted.
ADMIN_TOKEN_MIN = 16


class ApiSettings(_Section):
    """The FastAPI scoring service."""

    host: str = "127.0.0.1"
    port: Port = 8000
    #: A log line per request (uvicorn's access log): off by default, it cost 2 % of the
    #: API's time; every answer is in the decision log and the request metrics anyway.
    access_log: bool = False
    #: Processes serving the port (``fraudstream api --workers``): each scores on its own
    #: core with its own model copy and decision log; their metrics are read together.
    workers: int = Field(1, ge=1, le=64)
    #: Seconds an idle keep-alive connection is kept: above the idle timeout of what is in
    #: front (a connection closed as a client reuses it resets that request; uvicorn: 5 s).
    keep_alive_seconds: int = Field(75, ge=1, le=3600)
    #: How often the API looks for a newer model snapshot.
    model_refresh_seconds: float = Field(1.0, gt=0)
    #: Send every request's feature reads on one shared Redis connection, replies matched
    #: in order (``features.redis_mux``), instead of a pooled connection each: a third of
    #: a request's CPU went to redis-py's pool. Not for TLS or Unix sockets (pooled then).
    shared_redis_reads: bool = True
    #: Requests handled at once by one process; more are answered 503 at once, with
    #: Retry-After (load shedding). The Redis pool is sized to it.
    max_in_flight: int = Field(64, ge=1, le=10_000)
    #: Past its CPU, requests queue in front of the event loop, unseen: once it has run
    #: over this many ms behind for 100 ms, the process sheds (0: in-flight limit only) ...
    max_loop_lag_ms: float = Field(5.0, ge=0, le=10_000)
    #: ... letting in at most this many at once, the rest answered 503 at once, until a
    #: second refuses under 1 % (``stream.serving.guard``): the loop's turns stay short.
    shed_in_flight: int = Field(8, ge=1, le=10_000)
    #: Largest request body accepted; a bigger one is answered 413 without being read.
    max_body_bytes: int = Field(64 * 1024, ge=1024, le=64 * 1024 * 1024)
    #: Seconds a client is told to wait (Retry-After) when the API answers 503.
    retry_after_seconds: int = Field(1, ge=1, le=3600)
    #: The most transactions one ``POST /v1/score/batch`` may hold.
    batch_max: int = Field(100, ge=1, le=1_000)
    #: How many reason codes ``?explain=true`` returns (the features that raised the score).
    explain_top: int = Field(5, ge=1, le=100)
    #: Publish every answer to the ``predictions`` topic (the decision log), off the
    #: request's path.
    decision_log: bool = True
    #: Decisions kept while Kafka does not take them; past it they are dropped and counted
    #: (alert DecisionLogDropping).
    decision_buffer_max: int = Field(10_000, ge=1, le=10_000_000)
    #: Bearer token for the admin endpoints (promote, rollback); unset: disabled. At least
    #: ``ADMIN_TOKEN_MIN`` characters: an empty one would have let an empty bearer in.
    admin_token: SecretStr | None = None

    @field_validator("admin_token")
    @classmethod
    def _token_long_enough(cls, token: SecretStr | None) -> SecretStr | None:
        if token is not None and len(token.get_secret_value()) < ADMIN_TOKEN_MIN:
            raise ValueError(
                f"must be at least {ADMIN_TOKEN_MIN} characters (unset it to "
                "disable the admin endpoints)"
            )
        return token


class ModelSettings(_Section):
    """The online model and its snapshots."""

    #: The champion's model (docs/models.md): the online logistic regression and a gradient
    #: boosting refitted every 10,000 labels, blended.
    name: str = "hybrid_gradient_boosting"
    #: Models that learn beside the champion and score in shadow (JSON list in the env).
    challengers: tuple[str, ...] = ()
    #: The operating threshold: scores at or above it are flagged (for the metrics).
    threshold: float = Field(0.5, ge=0, le=1)
    #: Expected cost metric: the cost of a missed fraud and of a false alarm.
    cost_missed_fraud: float = Field(100.0, ge=0)
    cost_false_alarm: float = Field(5.0, ge=0)
    #: Publish a snapshot after this many learned labels ...
    snapshot_every_labels: int = Field(100, ge=1)
    #: ... or after this many seconds when something was learned.
    snapshot_every_seconds: float = Field(5.0, gt=0)
    #: ... but not sooner than this many seconds after the last one (at 5,000 labels a
    #: second, every 100 labels would be 50 snapshots a second; 0: every 100 labels).
    snapshot_min_seconds: float = Field(1.0, ge=0)
    #: HMAC key that signs snapshots. Required by the worker and the API.
    signing_key: SecretStr | None = None


class ServicesSettings(_Section):
    """The real servers ``fraudstream services`` starts as local processes."""

    #: All state (data, logs, pids, generated configs) lives under this folder.
    state_dir: Path = Path(".state")
    #: Downloads (Kafka jars) are cached here.
    cache_dir: Path = Path(".cache")
    kafka_version: str = "3.9.1"
    kafka_port: Port = 9092
    kafka_controller_port: Port = 9097
    kafka_heap: str = "512m"
    redis_port: Port = 6379
    #: Masters of a local Redis Cluster started beside the single Redis (``services up
    #: --redis-cluster N``; at least 3, or 0: none), on ports from ``redis_cluster_port``
    #: up (each also uses its port plus 10,000 for the cluster's bus).
    redis_cluster: int = Field(0, ge=0, le=16)
    redis_cluster_port: Port = 7000
    prometheus_port: Port = 9090
    alertmanager_port: Port = 9093
    #: Prometheus scrape and rule evaluation interval.
    scrape_interval: str = Field("5s", pattern=r"^\d+(ms|s|m)$")
    #: Install missing servers with apt/Maven when they are absent.
    auto_install: bool = True

    @field_validator("redis_cluster")
    @classmethod
    def _three_masters_or_none(cls, value: int) -> int:
        if 0 < value < 3:
            raise ValueError("a Redis Cluster needs at least 3 masters (0: no cluster)")
        return value


class Settings(BaseSettings):
    """All of fraudstream's settings, read from the environment once."""

    model_config = SettingsConfigDict(
        env_prefix="FRAUDSTREAM_",
        env_nested_delimiter="__",
        env_file=".env",
        frozen=True,
        extra="ignore",
        # An error names the setting and the reason, never the value: it may be a secret.
        hide_input_in_errors=True,
    )

    kafka: KafkaSettings = KafkaSettings()
    topics: TopicSettings = TopicSettings()
    redis: RedisSettings = RedisSettings()
    features: FeatureSettings = FeatureSettings()
    drift: DriftSettings = DriftSettings()
    worker: WorkerSettings = WorkerSettings()
    api: ApiSettings = ApiSettings()
    model: ModelSettings = ModelSettings()
    services: ServicesSettings = ServicesSettings()


def load_settings() -> Settings:
    """Read the settings from the environment (call at entry points only)."""
    return Settings()


def to_env(settings: Settings) -> dict[str, str]:
    """The environment variables that reproduce ``settings`` in a child process.

    Examples
    --------
    >>> env = to_env(Settings(topics=TopicSettings(prefix="x-")))
    >>> env["FRAUDSTREAM_TOPICS__PREFIX"], env["FRAUDSTREAM_KAFKA__PARTITIONS"]
    ('x-', '4')
    """
    env: dict[str, str] = {}
    for section_name in Settings.model_fields:
        section = getattr(settings, section_name)
        for field_name in type(section).model_fields:
            value = getattr(section, field_name)
            if value is None:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            elif isinstance(value, tuple):
                value = json.dumps(list(value))
            elif isinstance(value, bool):
                value = str(value).lower()
            env[f"FRAUDSTREAM_{section_name.upper()}__{field_name.upper()}"] = str(value)
    return env
