"""The records the worker consumes and produces, and the dead-letter envelope."""

from __future__ import annotations

import base64
import hashlib
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


#: The most of a record's value (and key) a dead letter carries, by default: far below
#: Kafka's 1 MB request limit even as base64, so a dead letter always lands.
DEAD_LETTER_VALUE_MAX = 64 * 1024
#: The most of a reason's detail a dead letter carries.
DETAIL_MAX = 2_000


def exact(raw: bytes | None, limit: int) -> dict[str, object]:
    """``raw`` as a dead letter keeps it: as text when it is UTF-8, as base64 when not, and
    above ``limit`` bytes only its start, with its length and SHA-256 (to match it with
    the producer's copy).

    Examples
    --------
    >>> exact(b"ok", 10)
    {'value': 'ok', 'encoding': 'utf-8'}
    >>> exact(bytes([255, 0]), 10)
    {'value': '/wA=', 'encoding': 'base64'}
    >>> cut = exact(b"abcdef", 4)
    >>> cut["value"], cut["length"], cut["truncated"], cut["sha256"][:12]
    ('abcd', 6, True, 'bef57ec7f53a')
    """
    if raw is None:
        return {"value": None}
    kept = raw[:limit]
    try:
        out: dict[str, object] = {"value": kept.decode("utf-8"), "encoding": "utf-8"}
    except UnicodeDecodeError:  # (a cut through a character is base64 too)
        out = {"value": base64.b64encode(kept).decode("ascii"), "encoding": "base64"}
    if len(raw) > limit:
        out.update(truncated=True, length=len(raw), sha256=hashlib.sha256(raw).hexdigest())
    return out


def dead_letter(
    record: RawRecord, topic: str, reason: str, detail: str, limit: int = DEAD_LETTER_VALUE_MAX
) -> Emit:
    """The dead-letter record for ``record``: where it was, what it was (byte for byte, up
    to ``limit`` bytes: :func:`exact`), why.

    Examples
    --------
    >>> raw = RawRecord("transactions", 0, 7, b"c1", b"{}")
    >>> out = dead_letter(raw, "dead-letters", "invalid_record", "amount: Field required")
    >>> letter = json.loads(out.value)
    >>> letter["reason"], letter["detail"], letter["value"], letter["key"]
    ('invalid_record', 'amount: Field required', '{}', 'c1')
    """
    value = exact(record.value, limit)
    key = exact(record.key, 1024)
    payload = {
        "source_topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "key": key.pop("value"),
        "key_encoding": key.pop("encoding", None),
        **{f"key_{name}": v for name, v in key.items()},
        **value,
        "reason": reason,
        "detail": detail if len(detail) <= DETAIL_MAX else detail[:DETAIL_MAX] + "...",
    }
    key_bytes = None if record.key is None else record.key[:1024]
    # UTF-8 as is (ensure_ascii would make a non-ASCII character up to 12 bytes)
    return Emit(
        topic, key_bytes, json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    )


class Rejects:
    """Dead-letters a record: counts it by topic and reason, logs it, and returns the
    envelope for the dead-letter ``topic``."""

    def __init__(
        self, topic: str, metrics: PipelineMetrics, limit: int = DEAD_LETTER_VALUE_MAX
    ) -> None:
        self.topic = topic
        self.metrics = metrics
        self.limit = limit

    def __call__(self, record: RawRecord, topic: str, reason: str, detail: str) -> Emit:
        self.metrics.dead_letters.labels(topic=topic, reason=reason).inc()
        log.warning(
            "dead-lettered %s[%d]@%d: %s: %s",
            record.topic,
            record.partition,
            record.offset,
            reason,
            detail[:500],
        )
        return dead_letter(record, self.topic, reason, detail, self.limit)


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
    return ScoredRecord.from_bytes(raw[_ORIGIN.size :]), Origin(partition, behind)


def encode_learned(
    record: ScoredRecord, label: Label, labels_learned: int, origin: Origin = Origin(-1, False)
) -> bytes:
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
    return (
        _ORIGIN.pack(origin.partition, origin.behind)
        + _LEARNED.pack(label.event_time, label.is_fraud, labels_learned)
        + record.to_bytes()
    )


def decode_learned(raw: bytes) -> tuple[ScoredRecord, Label, int, Origin]:
    """The record, label, label count and origin of :func:`encode_learned`'s bytes."""
    partition, behind = _ORIGIN.unpack_from(raw)
    event_time, is_fraud, learned = _LEARNED.unpack_from(raw, _ORIGIN.size)
    record = ScoredRecord.from_bytes(raw[_ORIGIN.size + _LEARNED.size :])
    return record, Label(record.txn_id, is_fraud, event_time), learned, Origin(partition, behind)
