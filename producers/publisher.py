"""Publish transactions and labels to Kafka with kafka-python.

Transactions are keyed by card id (one writer per card downstream), labels
by transaction id. The producer is idempotent with ``acks=all`` and retries;
a delivery that still fails is counted and reported by :meth:`flush`, never
lost silently.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from kafka import KafkaProducer

from features.events import Label, Transaction
from producers.schema import LabelRecord, TransactionRecord, encode


class PublishError(RuntimeError):
    """Some records could not be delivered; ``failures`` says which and why."""

    def __init__(self, failures: list[tuple[str, str]]) -> None:
        self.failures = failures
        shown = "; ".join(f"{key}: {why}" for key, why in failures[:5])
        super().__init__(f"{len(failures)} record(s) not delivered: {shown}")


def create_producer(bootstrap_servers: str) -> KafkaProducer:
    """An idempotent, ``acks=all`` producer that batches briefly."""
    return KafkaProducer(
        bootstrap_servers=bootstrap_servers,
        acks="all",
        enable_idempotence=True,
        retries=5,
        linger_ms=5,
        max_in_flight_requests_per_connection=5,
    )


@dataclass
class Publisher:
    """Sends events to the transactions and labels topics."""

    producer: KafkaProducer
    transactions_topic: str
    labels_topic: str
    sent: int = 0
    _failures: list[tuple[str, str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, event: Transaction | Label) -> None:
        """Queue one event for delivery."""
        if isinstance(event, Transaction):
            topic, key = self.transactions_topic, event.card_id
            value = encode(TransactionRecord.from_event(event))
        else:
            topic, key = self.labels_topic, event.txn_id
            value = encode(LabelRecord.from_event(event))
        future = self.producer.send(topic, key=key.encode(), value=value)
        future.add_errback(self._failed, f"{topic}/{key}")
        self.sent += 1

    def send_raw(self, topic: str, key: bytes | None, value: bytes) -> None:
        """Queue raw bytes (used to exercise the dead-letter path).

        Parameters
        ----------
        topic
            The topic to send to.
        key
            The record's key (None: unkeyed).
        value
            The record's bytes, sent as they are (not validated).
        """
        future = self.producer.send(topic, key=key, value=value)
        future.add_errback(self._failed, f"{topic}/{key!r}")
        self.sent += 1

    def flush(self, timeout: float = 30.0) -> None:
        """Wait for every queued record; raise :class:`PublishError` on failures."""
        self.producer.flush(timeout=timeout)
        with self._lock:
            failures, self._failures = self._failures, []
        if failures:
            raise PublishError(failures)

    def close(self) -> None:
        self.producer.close()

    def _failed(self, what: str, exc: BaseException) -> None:
        with self._lock:
            self._failures.append((what, repr(exc)))
