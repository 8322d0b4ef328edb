"""A batch of records handed to Kafka as one producer batch per partition.

The worker's outputs of one fetched batch (scores, dead letters, drift
events, learned labels) are produced together and awaited together, before
the batch's offsets are committed (:mod:`stream.runtime.app`). Each record
handed to the producer on its own cost about 11 us of the worker's CPU (a
future, the partitioner and the accumulator per record); appended to a
:meth:`~aiokafka.AIOKafkaProducer.create_batch` per partition and sent with
``send_batch``, about 5 us (50,000 score records, 500 a batch, on the local
Kafka).

A keyed record goes to the partition Kafka's default partitioner gives it
(:func:`producers.partitions.partition_of`), so every
record of a card lands where it always did and stays in order; a record
without a key goes to the partitions in turn, from a partition drawn at random
for each batch (so batches of a few records still spread).

Examples
--------
>>> groups = by_partition([Emit("s", b"a", b"1"), Emit("s", None, b"2"), Emit("s", b"a", b"3")],
...                       {"s": [0, 1]}, turn=1)
>>> {k: [e.value for e in v] for k, v in sorted(groups.items())}
{('s', 0): [b'1', b'3'], ('s', 1): [b'2']}
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer

from producers.partitions import partition_of
from stream.runtime.records import Emit

__all__ = ["by_partition", "produce", "produce_and_wait"]


def by_partition(
    emits: Sequence[Emit], partitions: Mapping[str, Sequence[int]], turn: int = 0
) -> dict[tuple[str, int], list[Emit]]:
    """``emits`` grouped by (topic, partition), each group in the order given; records
    without a key go to the partitions in turn, from the ``turn``-th."""
    groups: dict[tuple[str, int], list[Emit]] = {}
    for emit in emits:
        parts = partitions[emit.topic]
        if emit.key is None:
            partition = parts[turn % len(parts)]
            turn += 1
        else:
            partition = partition_of(emit.key, parts)
        groups.setdefault((emit.topic, partition), []).append(emit)
    return groups


async def produce(producer: AIOKafkaProducer, emits: Sequence[Emit]) -> list[Any]:
    """Hand ``emits`` to ``producer`` as whole batches; the futures of their delivery."""
    topics = {emit.topic for emit in emits}
    partitions = {topic: sorted(await producer.partitions_for(topic)) for topic in topics}
    deliveries = []
    groups = by_partition(emits, partitions, turn=random.randrange(1 << 16))
    for (topic, partition), group in groups.items():
        batch = producer.create_batch()
        for emit in group:
            if batch.append(key=emit.key, value=emit.value, timestamp=None) is None:
                deliveries.append(await producer.send_batch(batch, topic, partition=partition))
                batch = producer.create_batch()  # full: the record opens the next one (an
                batch.append(key=emit.key, value=emit.value, timestamp=None)  # empty batch
                # takes a record of any size, as the producer's own send does)
        deliveries.append(await producer.send_batch(batch, topic, partition=partition))
    return deliveries


async def produce_and_wait(producer: AIOKafkaProducer, emits: Sequence[Emit]) -> None:
    """:func:`produce`, then wait until Kafka has every record (``acks`` as the
    producer's)."""
    if emits:
        await asyncio.gather(*await produce(producer, emits))
