"""The worker's outputs, produced in one batch per partition, on the real Kafka: every
record lands on the partition a record-by-record send gives its key, in order."""

from __future__ import annotations

import secrets
from collections import defaultdict

import pytest
from aiokafka import AIOKafkaProducer
from kafka import KafkaConsumer
from kafka.admin import KafkaAdminClient, NewTopic

from stream.runtime.output import produce_and_wait
from stream.runtime.records import Emit

pytestmark = pytest.mark.integration


def _read(bootstrap: str, topic: str, want: int) -> list[tuple[int, bytes | None, bytes]]:
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
        consumer_timeout_ms=5_000,
    )
    try:
        out = []
        for message in consumer:
            out.append((message.partition, message.key, message.value))
            if len(out) == want:
                break
        return out
    finally:
        consumer.close()


async def test_batched_records_land_where_a_send_puts_them_in_order(
    kafka_bootstrap: str,
) -> None:
    tag = secrets.token_hex(3)
    batched, single = f"out-batched-{tag}", f"out-single-{tag}"
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    admin.create_topics([NewTopic(t, 4, 1) for t in (batched, single)])
    admin.close()
    # 30 cards, 2,000 records (several producer batches a partition), some without a key,
    # one larger than a whole producer batch (a dead letter can be)
    emits = [
        Emit(
            batched,
            None if i % 97 == 0 else f"c{i % 30:03d}".encode(),
            (b"x" * 20_000 if i == 500 else b"") + f"{i}".encode(),
        )
        for i in range(2_000)
    ]
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        await produce_and_wait(producer, emits[:1_000])
        await produce_and_wait(producer, emits[1_000:])
        for emit in emits:
            if emit.key is not None:
                await producer.send(single, emit.value, key=emit.key)
        await producer.flush()
    finally:
        await producer.stop()

    got = _read(kafka_bootstrap, batched, len(emits))
    assert sorted(value for _, _, value in got) == sorted(e.value for e in emits)
    keyed = [e for e in emits if e.key is not None]
    where = {key: partition for partition, key, _ in _read(kafka_bootstrap, single, len(keyed))}
    per_key: dict[bytes, list[bytes]] = defaultdict(list)
    unkeyed_partitions = set()
    for partition, key, value in got:
        if key is None:
            unkeyed_partitions.add(partition)
            continue
        assert partition == where[key], key
        per_key[key].append(value)
    for key, values in per_key.items():
        assert values == [e.value for e in keyed if e.key == key]
    assert len(unkeyed_partitions) > 1  # spread over the partitions, not all on one
