"""The records the worker consumes and produces, and the dead-letter envelope."""

from __future__ import annotations

import json
import logging
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from features.events import Label
from features.store import ScoredRecord

if TYPE_CHECKING:
    from monitoring.metrics import PipelineMetrics

log = logging.getLogger(__name__)

#: A learned record's head: the label's event time, its truth, the lineage's label count.
_LEARNED = struct.Struct("<d?Q")


@dataclass(frozen=True, slots=True)
class RawRecord:
    """A record as consumed: where it came from and its undecoded bytes."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    #: Whether the partition held more records after this one when it was fetched (the
    #: worker is behind on it): drift detectors wait for it (``monitoring.ordering``).
    behind: bool = False


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


class Rejects:
    """Dead-letters a record: counts it by topic and reason, logs it, and returns the
    envelope for the dead-letter ``topic``."""

    def __init__(self, topic: str, metrics: PipelineMetrics) -> None:
        self.topic = topic
        self.metrics = metrics

    def __call__(self, record: RawRecord, topic: str, reason: str, detail: str) -> Emit:
        self.metrics.dead_letters.labels(topic=topic, reason=reason).inc()
        log.warning("dead-lettered %s[%d]@%d: %s: %s",
                    record.topic, record.partition, record.offset, reason, detail)
        return dead_letter(record, self.topic, reason, detail)


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a record the monitor gets through Kafka came from: the partition of the
    transactions (or labels) topic it was read from (-1: none, a label that waited), and
    whether that partition held more records then, so the monitor orders the stream in
    event time as if it read those partitions itself (:mod:`monitoring.ordering`)."""

    partition: int
    behind: bool

    @property
    def source(self) -> tuple[str, int] | None:
        return None if self.partition < 0 else ("origin", self.partition)


#: The head of a record on ``scored`` and ``learned``: the origin's partition and flag.
_ORIGIN = struct.Struct("<h?")


def encode_scored(record: ScoredRecord, origin: Origin) -> bytes:
    """A scored record (with its vector) as the internal ``scored`` topic carries it.

    >>> from features.vector import EntityState, view
    >>> from features.events import Transaction
    >>> t = Transaction("t1", "c1", "p1", 10.0, 5.0)
    >>> r = ScoredRecord("t1", "c1", "p1", 5.0, view(EntityState(), t), 0.25, 3)
    >>> decode_scored(encode_scored(r, Origin(2, True))) == (r, Origin(2, True))
    True
    """
    return _ORIGIN.pack(origin.partition, origin.behind) + record.to_bytes()


def decode_scored(raw: bytes) -> tuple[ScoredRecord, Origin]:
    partition, behind = _ORIGIN.unpack_from(raw)
    return ScoredRecord.from_bytes(raw[_ORIGIN.size:]), Origin(partition, behind)


def encode_learned(record: ScoredRecord, label: Label, labels_learned: int,
                   origin: Origin = Origin(-1, False)) -> bytes:
    """A learned label as the internal ``learned`` topic carries it to the monitor: where
    the label was read, the label, how many labels the champion's lineage has learned,
    and the record its transaction was scored with.

    Examples
    --------
    >>> from features.vector import EntityState, view
    >>> from features.events import Transaction
    >>> t = Transaction("t1", "c1", "p1", 10.0, 5.0)
    >>> r = ScoredRecord("t1", "c1", "p1", 5.0, view(EntityState(), t), 0.25, 3)
    >>> decode_learned(encode_learned(r, Label("t1", True, 99.0), 7, Origin(1, False))) == (
    ...     r, Label("t1", True, 99.0), 7, Origin(1, False))
    True
    """
    return (_ORIGIN.pack(origin.partition, origin.behind)
            + _LEARNED.pack(label.event_time, label.is_fraud, labels_learned)
            + record.to_bytes())


def decode_learned(raw: bytes) -> tuple[ScoredRecord, Label, int, Origin]:
    """The record, label, label count and origin of :func:`encode_learned`'s bytes."""
    partition, behind = _ORIGIN.unpack_from(raw)
    event_time, is_fraud, learned = _LEARNED.unpack_from(raw, _ORIGIN.size)
    record = ScoredRecord.from_bytes(raw[_ORIGIN.size + _LEARNED.size:])
    return record, Label(record.txn_id, is_fraud, event_time), learned, Origin(partition,
                                                                                behind)
