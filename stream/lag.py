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


def group_offsets(admin: KafkaAdminClient, consumer: KafkaConsumer, group: str,
                  topics: Sequence[str]) -> dict[TopicPartition, tuple[int, int]]:
    """``(committed, end)`` offsets of ``group`` per partition of ``topics``.

    A partition the group never committed counts as committed at 0.
    """
    committed = admin.list_group_offsets(group).get(group, {})
    partitions = [TopicPartition(t, p) for t in topics
                  for p in sorted(consumer.partitions_for_topic(t) or ())]
    ends = consumer.end_offsets(partitions)
    result = {}
    for tp in partitions:
        done = committed.get(tp)
        result[tp] = (done.offset if done is not None and done.offset >= 0 else 0, ends[tp])
    return result


def consumer_lag(admin: KafkaAdminClient, consumer: KafkaConsumer, group: str,
                 topics: Sequence[str]) -> dict[TopicPartition, int]:
    """Messages not yet committed by ``group``, per partition of ``topics``."""
    return {tp: max(0, end - done)
            for tp, (done, end) in group_offsets(admin, consumer, group, topics).items()}


class TopicProgress:
    """How far one consumer group has got through one topic, read on demand.

    :meth:`read` blocks on the network (run it in a thread); it keeps its two
    clients between calls and builds them again after a failure.
    """

    def __init__(self, bootstrap: str, group: str, topic: str) -> None:
        self.bootstrap, self.group, self.topic = bootstrap, group, topic
        self._clients: tuple[KafkaAdminClient, KafkaConsumer] | None = None

    def read(self) -> tuple[dict[int, int], dict[int, int]]:
        """The group's committed offsets and the topic's end offsets, by partition."""
        try:
            if self._clients is None:
                self._clients = _clients(self.bootstrap)
            offsets = group_offsets(*self._clients, self.group, [self.topic])
        except Exception:
            self.close()
            raise
        return ({tp.partition: done for tp, (done, _) in offsets.items()},
                {tp.partition: end for tp, (_, end) in offsets.items()})

    def close(self) -> None:
        if self._clients is not None:
            for client in self._clients:
                client.close()
        self._clients = None


def _clients(bootstrap: str) -> tuple[KafkaAdminClient, KafkaConsumer]:
    return (KafkaAdminClient(bootstrap_servers=bootstrap),
            KafkaConsumer(bootstrap_servers=bootstrap, group_id=None))


def watch_lag(bootstrap: str, group: str, topics: Sequence[str], registry: CollectorRegistry,
              every: float = 15.0) -> threading.Event:
    """Keep the lag gauge current from a daemon thread; set the returned event to stop it.

    The thread keeps one admin client and one consumer for its whole life.
    """
    gauge = Gauge("fraudstream_consumer_lag", "Messages the worker has not yet processed.",
                  ["topic", "partition"], registry=registry)
    stop = threading.Event()

    def loop() -> None:
        clients: tuple[KafkaAdminClient, KafkaConsumer] | None = None
        while not stop.is_set():
            try:
                if clients is None:
                    clients = _clients(bootstrap)
                for tp, behind in consumer_lag(*clients, group, topics).items():
                    gauge.labels(topic=tp.topic, partition=str(tp.partition)).set(behind)
            except Exception as exc:  # the broker may be restarting: reconnect next time
                log.warning("could not measure consumer lag: %r", exc)
                if clients is not None:
                    for client in clients:
                        client.close()
                clients = None
            stop.wait(every)

    threading.Thread(target=loop, name="consumer-lag", daemon=True).start()
    return stop
