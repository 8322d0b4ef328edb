"""Consumer lag of the worker's group: how far behind the end of each topic it is.

Faust commits offsets under the app id; this compares them with the end of
each partition (kafka-python's admin and consumer), in a background thread
every ``every`` seconds, into ``fraudstream_consumer_lag{topic, partition}``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from prometheus_client import CollectorRegistry, Gauge

log = logging.getLogger(__name__)


def group_offsets(
    admin: KafkaAdminClient, consumer: KafkaConsumer, group: str, topics: Sequence[str]
) -> dict[TopicPartition, tuple[int, int]]:
    """``(committed, end)`` offsets of ``group`` per partition of ``topics``.

    A partition the group never committed counts as committed at 0.
    """
    committed = admin.list_group_offsets(group).get(group, {})
    partitions = [TopicPartition(t, p) for t in topics for p in sorted(_partitions(consumer, t))]
    ends = consumer.end_offsets(partitions)
    result = {}
    for tp in partitions:
        done = committed.get(tp)
        result[tp] = (done.offset if done is not None and done.offset >= 0 else 0, ends[tp])
    return result


def _partitions(consumer: KafkaConsumer, topic: str) -> set[int]:
    """The partitions of ``topic``. A new client knows no topic until it has fetched the
    metadata: an empty answer would read as "nothing to wait for", so it is refused."""
    partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        consumer.topics()  # fetches the cluster's metadata
        partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        raise RuntimeError(f"no partition of topic {topic!r} is known yet")
    return set(partitions)


class GroupProgress:
    """How far one consumer group has got through some topics, read on demand.

    :meth:`offsets` blocks on the network (run it in a thread); it keeps its
    two clients between calls and builds them again after a failure.
    """

    def __init__(self, bootstrap: str, group: str, topics: Sequence[str]) -> None:
        self.bootstrap, self.group, self.topics = bootstrap, group, list(topics)
        self._clients: tuple[KafkaAdminClient, KafkaConsumer] | None = None

    def offsets(self) -> dict[TopicPartition, tuple[int, int]]:
        """``(committed, end)`` per partition (see :func:`group_offsets`)."""
        try:
            if self._clients is None:
                self._clients = (
                    KafkaAdminClient(bootstrap_servers=self.bootstrap),
                    KafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None),
                )
            return group_offsets(*self._clients, self.group, self.topics)
        except Exception:
            self.close()
            raise

    def lag(self) -> dict[TopicPartition, int]:
        """Messages not yet committed by the group, per partition."""
        return {tp: max(0, end - done) for tp, (done, end) in self.offsets().items()}

    def read(self) -> tuple[dict[int, int], dict[int, int]]:
        """Committed and end offsets by partition (of one topic: the waiting labels' view)."""
        offsets = self.offsets()
        return (
            {tp.partition: done for tp, (done, _) in offsets.items()},
            {tp.partition: end for tp, (_, end) in offsets.items()},
        )

    def close(self) -> None:
        if self._clients is not None:
            for client in self._clients:
                client.close()
        self._clients = None


def watch_lag(
    bootstrap: str,
    group: str,
    topics: Sequence[str],
    registry: CollectorRegistry,
    every: float = 15.0,
) -> threading.Event:
    """Keep the lag gauge current from a daemon thread; set the returned event to stop it.

    The thread keeps one admin client and one consumer for its whole life.
    """
    gauge = Gauge(
        "fraudstream_consumer_lag",
        "Messages the worker has not yet processed.",
        ["topic", "partition"],
        registry=registry,
    )
    stop = threading.Event()
    progress = GroupProgress(bootstrap, group, topics)

    def loop() -> None:
        while not stop.is_set():
            try:
                for tp, behind in progress.lag().items():
                    gauge.labels(topic=tp.topic, partition=str(tp.partition)).set(behind)
            except Exception as exc:  # the broker may be restarting: reconnect next time
                log.warning("could not measure consumer lag: %r", exc)
            stop.wait(every)

    threading.Thread(target=loop, name="consumer-lag", daemon=True).start()
    return stop
