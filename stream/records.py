"""The records the worker consumes and produces, and the dead-letter envelope."""

from __future__ import annotations

import json
from dataclasses import dataclass


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
