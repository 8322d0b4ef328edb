"""The score role: transactions in, features folded into Redis, scores out.

Any number of scorers share one consumer group on ``transactions`` (keyed
by card, so each card's state has one writer). A scorer serves the
champion, and the challengers in shadow; without a learner in its process
it follows their published snapshots (:meth:`ScoreRole.follow`), as the API
does, and never learns.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from redis.exceptions import AskError, ClusterError, RedisClusterException, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from features.events import Transaction
from features.store import FeatureStore, ScoredRecord, Status
from features.vector import FEATURE_SET_VERSION
from models.challengers import Challengers
from models.errors import NoModelError
from models.following import follow
from models.registry import ModelRegistry
from models.scoring import ModelHolder, score_batch
from models.snapshots import SnapshotMeta
from monitoring.metrics import PipelineMetrics
from producers.schema import RecordError, ScoreMessage, decode_transaction, encode, to_datetime
from stream.runtime.flow import PartitionAlign, ScoreHold, frontier_key
from stream.runtime.marks import RaisedMarks
from stream.runtime.records import Emit, RawRecord, Rejects
from stream.settings import Settings

log = logging.getLogger(__name__)

#: A transaction's place in Kafka, for the drift detectors' ordering: (topic, partition).
Source = tuple[str, int]


@dataclass
class ScoredBatch:
    """What scoring a batch gave: records to send, the newly scored records (with their
    partition and whether it was behind) and every record scored (new or again)."""

    emits: list[Emit] = field(default_factory=list)
    new: list[tuple[ScoredRecord, Source, bool]] = field(default_factory=list)
    again: list[tuple[ScoredRecord, Source, bool]] = field(default_factory=list)


#: While a scorer waits for the labels, it reads the learner's frontier this often ...
LABELS_POLL_SECONDS = 0.02
#: ... and goes on anyway if the frontier has not moved for this long (no learner reads the
#: labels: stopped, or standing by).
LABELS_STALL_SECONDS = 5.0


def stream_time_key(settings: Settings) -> str:
    """The Redis hash of each partition's newest scored event time (for the learner)."""
    return f"{settings.redis.key_prefix}:stream:time"


def state_began_key(settings: Settings) -> str:
    """The Redis key of the feature state's first event time (for the drift warm-up)."""
    return f"{settings.redis.key_prefix}:v{FEATURE_SET_VERSION}:state:began"


class ScoreRole:
    """Scores transaction records with the champion (and challengers in shadow)."""

    def __init__(
        self,
        settings: Settings,
        store: FeatureStore,
        registry: ModelRegistry,
        metrics: PipelineMetrics,
        challengers: Challengers,
        rejects: Rejects,
        following: bool,
    ) -> None:
        self.settings = settings
        self.store = store
        self.registry = registry
        self.metrics = metrics
        self.challengers = challengers
        self.rejects = rejects
        #: Without a learner in the process: load what the learner publishes.
        self.following = following
        self.holder = ModelHolder()
        self.scores_topic = settings.topics.name("scores")
        #: The newest event time scored, overall and per partition.
        self.newest = 0.0
        self._newest_by_partition: dict[int, float] = {}
        self._stream_time = RaisedMarks(registry.client, stream_time_key(settings))
        #: Event time of the feature state's first transaction (for the drift warm-up).
        self.state_start: float | None = None
        #: Whether to pause the transactions partitions for the labels (applied by the app).
        self.hold = ScoreHold(settings.worker.scoring_lead_seconds)
        #: Which transactions partitions to leave unread for now, so that they are read in
        #: step in event time (applied by the app's consumer).
        self.align = PartitionAlign(settings.worker.partition_lead_seconds)
        self._frontier_key = frontier_key(settings.redis.key_prefix)
        #: Whether it waits for the labels now.
        self.waiting = False

    async def follow(self) -> SnapshotMeta | None:
        """Serve the published champion (and challengers in shadow) if they changed."""
        meta = await follow(self.registry, self.holder)
        if meta is not None:
            self.metrics.model_version.set(meta.version)
        await self.challengers.follow(self.registry)
        return meta

    async def on_transactions(self, records: Sequence[RawRecord]) -> ScoredBatch:
        """Score a batch of raw transaction records, in order."""
        self.metrics.events_in.labels(topic="transactions").inc(len(records))
        started = time.perf_counter()
        batch = ScoredBatch()
        decoded: list[tuple[RawRecord, Transaction]] = []
        horizon = max(self.newest, time.time()) + self.settings.features.max_future_seconds
        seen: dict[str, Transaction] = {}
        for record in records:
            try:
                txn = decode_transaction(record.value or b"")
            except RecordError as exc:
                batch.emits.append(self.rejects(record, "transactions", "invalid_record", str(exc)))
                continue
            if txn.event_time > horizon:
                batch.emits.append(
                    self.rejects(
                        record,
                        "transactions",
                        "invalid_record",
                        f"event_time: {txn.event_time - horizon:.0f}s past the stream's newest "
                        "event and the clock plus features.max_future_seconds",
                    )
                )
                continue
            first = seen.setdefault(txn.txn_id, txn)
            if first is not txn and _conflict(first, txn):
                batch.emits.append(
                    self.rejects(
                        record, "transactions", "conflicting_duplicate", _conflict(first, txn)
                    )
                )
                continue
            decoded.append((record, txn))
        if decoded:
            if self.settings.drift.enabled and self.state_start is None:
                await self._state_began(min(txn.event_time for _, txn in decoded))
            await self._score_in_step(decoded, batch)
        self._read(records, decoded)
        self.metrics.latency.labels(stage="score").observe(time.perf_counter() - started)
        if self.newest:
            self.metrics.newest_event.set(self.newest)
        return batch

    def _read(
        self, records: Sequence[RawRecord], decoded: Sequence[tuple[RawRecord, Transaction]]
    ) -> None:
        """Tell the partitions' alignment how far each partition of the batch was read."""
        newest: dict[int, float] = {}
        for record, txn in decoded:
            if txn.event_time > newest.get(record.partition, -math.inf):
                newest[record.partition] = txn.event_time
        behind = {record.partition: record.behind for record in records}  # the last's
        now = time.monotonic()
        for partition, at in newest.items():
            self.align.read(partition, at, behind[partition], now)

    async def _score_in_step(
        self, decoded: Sequence[tuple[RawRecord, Transaction]], batch: ScoredBatch
    ) -> None:
        """Score the batch in order, each transaction once the labels before it have been
        read: one more than ``worker.scoring_lead_seconds`` past the learner's frontier
        waits for it (:mod:`stream.runtime.flow`). Live there is no frontier: one go."""
        limit = await self._labels_limit()
        start = 0
        for i, (_, txn) in enumerate(decoded):
            if limit is not None and txn.event_time > limit:
                if i > start:  # those before it first: the stream time moves on
                    await self._score(decoded[start:i], batch)
                    start = i
                limit = await self._wait_for_labels(txn.event_time)
        await self._score(decoded[start:], batch)

    async def _labels_limit(self) -> float | None:
        """The newest event time that may be scored now (None: no limit)."""
        raw = await self.registry.client.get(self._frontier_key)
        return None if raw is None else float(raw) + self.hold.lead

    async def _wait_for_labels(self, event_time: float) -> float | None:
        """Wait until ``event_time`` is within the lead of the learner's frontier (or there
        is no frontier, or it stalled); the new limit."""
        self.metrics.scoring_held.set(1)
        self.metrics.scoring_holds.inc()
        self.waiting = True
        last = None
        since = time.monotonic()
        try:
            while True:
                limit = await self._labels_limit()
                if limit is None or event_time <= limit:
                    return limit
                if limit != last:
                    last, since = limit, time.monotonic()
                elif time.monotonic() - since > LABELS_STALL_SECONDS:
                    log.warning(
                        "the labels frontier has not moved for %.0f s: scoring on "
                        "(event time %.0f, limit %.0f)",
                        LABELS_STALL_SECONDS,
                        event_time,
                        limit,
                    )
                    self.metrics.scoring_hold_stalls.inc()
                    return None
                await asyncio.sleep(LABELS_POLL_SECONDS)
        finally:
            self.waiting = False
            self.metrics.scoring_held.set(0)

    async def holding(self) -> bool:
        """Whether to pause the transactions partitions, so that no more are fetched while
        the scorer waits for the labels (:class:`~stream.runtime.flow.ScoreHold`)."""
        limit = await self._labels_limit()
        return self.hold.decide(
            self.newest, None if limit is None else limit - self.hold.lead, self.waiting
        )

    async def _score(
        self, decoded: Sequence[tuple[RawRecord, Transaction]], batch: ScoredBatch
    ) -> None:
        try:
            results = await score_batch(
                self.store, self.holder, [txn for _, txn in decoded], self.challengers.holders
            )
        except Exception as exc:
            if is_infrastructure(exc):
                raise
            if len(decoded) > 1:  # find the culprit: the others are applied once anyway
                for one in decoded:
                    await self._score([one], batch)
                return
            record, txn = decoded[0]
            log.exception("scoring failed for txn %s", txn.txn_id)
            self.metrics.errors.labels(stage="score").inc()
            batch.emits.append(self.rejects(record, "transactions", "processing_error", repr(exc)))
            return
        scores = 0
        for (record, txn), result in zip(decoded, results, strict=True):
            if result.status is Status.CONFLICT:
                batch.emits.append(
                    self.rejects(
                        record,
                        "transactions",
                        "conflicting_duplicate",
                        f"txn_id {txn.txn_id!r} was seen on card {result.owner!r} and again on "
                        f"card {txn.card_id!r}",
                    )
                )
                continue
            if result.record is None:
                batch.emits.append(
                    self.rejects(
                        record,
                        "transactions",
                        "too_late",
                        self._lateness_detail(txn, result.newest),
                    )
                )
                continue
            if result.duplicate and _conflict(result.record, txn):
                batch.emits.append(
                    self.rejects(
                        record,
                        "transactions",
                        "conflicting_duplicate",
                        _conflict(result.record, txn),
                    )
                )
                continue
            if result.duplicate:
                self.metrics.duplicates.labels(topic="transactions").inc()
                batch.again.append((result.record, (record.topic, record.partition), record.behind))
            else:
                self.newest = max(self.newest, txn.event_time)
                partition = record.partition
                self._newest_by_partition[partition] = max(
                    self._newest_by_partition.get(partition, 0.0), txn.event_time
                )
                batch.new.append((result.record, (record.topic, partition), record.behind))
            try:
                value = score_value(result.record)
            except Exception as exc:  # our bug on this record: never a batch retried for ever
                if is_infrastructure(exc):
                    raise
                log.exception("publishing the score of txn %s failed", txn.txn_id)
                self.metrics.errors.labels(stage="score").inc()
                batch.emits.append(
                    self.rejects(record, "transactions", "processing_error", f"score: {exc!r}")
                )
                continue
            scores += 1
            batch.emits.append(Emit(self.scores_topic, txn.card_id.encode(), value))
        self.metrics.scores_out.inc(scores)  # once a batch (a counter's lock per record)

    async def _state_began(self, event_time: float) -> None:
        """Record when the feature state began (the first writer wins)."""
        client = self.registry.client
        key = state_began_key(self.settings)
        await client.set(key, repr(event_time), nx=True)
        stored = await client.get(key)
        self.state_start = event_time if stored is None else float(stored)

    async def report_stream_time(self) -> None:
        """Tell a learner in another process how far this scorer got, per partition (each
        partition's newest event time only grows: a stale owner cannot move it back)."""
        await self._stream_time.raise_to(self._newest_by_partition)

    async def resume_stream_time(self) -> None:
        """Start from the stream time reported before: a restarted process's learner must
        not take the labels the stream already passed for labels ahead of it."""
        self.newest = max(self.newest, await self._stream_time.highest())

    def _lateness_detail(self, txn: Transaction, newest: float | None) -> str:
        behind = 0.0 if newest is None else newest - txn.event_time
        allowed = self.settings.features.allowed_lateness_seconds
        return (
            f"event_time: {behind:.3f}s before card {txn.card_id!r}'s newest event, "
            f"more than the allowed lateness of {allowed:g}s"
        )


def _conflict(first: Transaction | ScoredRecord, again: Transaction) -> str:
    """Why ``again`` is not a redelivery of ``first`` (same id, other content), or ''.

    Examples
    --------
    >>> a = Transaction("t1", "c1", "p1", 10.0, 5.0)
    >>> _conflict(a, a)
    ''
    >>> print(_conflict(a, Transaction("t1", "c2", "p1", 10.0, 5.0)))  # doctest: +ELLIPSIS
    txn_id 't1' was seen on card 'c1' (terminal 'p1', ...) and again on card 'c2' (...)
    """
    if (first.card_id, first.terminal_id, first.event_time) == (
        again.card_id,
        again.terminal_id,
        again.event_time,
    ):
        return ""
    return (
        f"txn_id {again.txn_id!r} was seen on card {first.card_id!r} (terminal "
        f"{first.terminal_id!r}, event time {first.event_time:g}) and again on card "
        f"{again.card_id!r} (terminal {again.terminal_id!r}, event time "
        f"{again.event_time:g})"
    )


def score_value(scored: ScoredRecord) -> bytes:
    """The ``scores`` topic's record of a scored transaction."""
    return encode(
        ScoreMessage(
            txn_id=scored.txn_id,
            card_id=scored.card_id,
            score=scored.score,
            model_version=scored.model_version,
            event_time=to_datetime(scored.event_time),
        )
    )


def is_infrastructure(exc: BaseException) -> bool:
    """Whether ``exc`` is an outage to wait out (the records are retried), not a bad record:
    Redis (or a Redis Cluster: down, failing over, resharding) unreachable, no model.

    >>> from redis.exceptions import ClusterDownError, ResponseError, TryAgainError
    >>> down, moving = ClusterDownError("CLUSTERDOWN"), TryAgainError()
    >>> [is_infrastructure(e) for e in (down, moving, ResponseError())]
    [True, True, False]
    """
    return isinstance(
        exc,
        RedisConnectionError
        | RedisTimeoutError
        | ClusterError
        | TryAgainError
        | AskError
        | RedisClusterException
        | NoModelError
        | OSError,
    )
