"""The batch consumer on the real Kafka: a batch is committed only after its handler
returned, a member that dies mid-batch leaves it to the next one, and a rebalance waits
for the batch in hand (:mod:`stream.runtime.consumer`)."""

from __future__ import annotations

import asyncio
import secrets

import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic

from stream.runtime.consumer import BatchConsumer, Handler
from stream.runtime.records import RawRecord

pytestmark = pytest.mark.integration

RECORDS = 2_000


def _topic(kafka: str, partitions: int = 2) -> str:
    name = f"consumer-{secrets.token_hex(4)}"
    admin = KafkaAdminClient(bootstrap_servers=kafka)
    try:
        admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        admin.close()
    producer = KafkaProducer(bootstrap_servers=kafka, acks="all")
    for i in range(RECORDS):
        producer.send(name, key=str(i % 50).encode(), value=str(i).encode())
    producer.flush()
    producer.close()
    return name


def _member(
    kafka: str, group: str, topic: str, handler: Handler, batch_max: int = 100
) -> BatchConsumer:
    return BatchConsumer(
        kafka,
        group,
        [topic],
        handler,
        batch_max=batch_max,
        within=0.05,
        session_timeout=6.0,
        heartbeat=1.0,
        name=group,
    )


async def test_a_member_killed_mid_batch_leaves_its_uncommitted_records_to_the_next(
    kafka_bootstrap: str,
) -> None:
    """The first member handles three batches, dies inside the fourth (its task cancelled:
    no commit, no goodbye); the next member reads from the first uncommitted record, so
    the two together saw every record, and what both saw is only the batch in hand."""
    topic = _topic(kafka_bootstrap)
    group = f"g-{secrets.token_hex(4)}"
    first: list[tuple[int, int]] = []
    dying = asyncio.Event()

    async def handle_then_die(batch: list[RawRecord]) -> None:
        if len(first) >= 300:
            dying.set()
            await asyncio.sleep(3600)  # killed here, inside its fourth batch
        first.extend((r.partition, r.offset) for r in batch)

    one = _member(kafka_bootstrap, group, topic, handle_then_die)
    task = asyncio.create_task(one.run())
    await asyncio.wait_for(dying.wait(), 60)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await one.client.stop()  # its connection closes, as a killed process's would
    second: list[tuple[int, int]] = []

    async def handle(batch: list[RawRecord]) -> None:
        second.extend((r.partition, r.offset) for r in batch)

    two = _member(kafka_bootstrap, group, topic, handle)
    task = asyncio.create_task(two.run())
    try:
        async with asyncio.timeout(60):
            while len(set(first) | set(second)) < RECORDS:
                await asyncio.sleep(0.1)
    finally:
        await two.stop()
        await task
    assert len(set(first) | set(second)) == RECORDS  # none lost
    assert len(first) == len(set(first)) and len(second) == len(set(second))
    # read twice: only records the first member had not committed (its batch in hand)
    again = set(first) & set(second)
    assert len(again) <= 100, len(again)


async def test_a_rebalance_waits_for_the_batch_in_hand(kafka_bootstrap: str) -> None:
    """A second member joins while the first is inside a slow batch: that batch finishes
    and is committed before its partition moves, so the newcomer never reads it again."""
    topic = _topic(kafka_bootstrap)
    group = f"g-{secrets.token_hex(4)}"
    seen: dict[str, list[tuple[int, int]]] = {"one": [], "two": []}
    slow = asyncio.Event()

    def handler(name: str, pause: float) -> Handler:
        async def handle(batch: list[RawRecord]) -> None:
            if name == "one" and len(seen["one"]) >= 200 and not slow.is_set():
                slow.set()
                await asyncio.sleep(pause)  # the newcomer joins meanwhile
            seen[name].extend((r.partition, r.offset) for r in batch)

        return handle

    one = _member(kafka_bootstrap, group, topic, handler("one", 4.0), batch_max=50)
    first = asyncio.create_task(one.run())
    await asyncio.wait_for(slow.wait(), 60)
    two = _member(kafka_bootstrap, group, topic, handler("two", 0.0), batch_max=50)
    second = asyncio.create_task(two.run())
    try:
        async with asyncio.timeout(60):
            while len(set(seen["one"]) | set(seen["two"])) < RECORDS:
                await asyncio.sleep(0.1)
    finally:
        await asyncio.gather(one.stop(), two.stop())
        await asyncio.gather(first, second)
    assert len(set(seen["one"]) | set(seen["two"])) == RECORDS
    assert set(seen["one"]).isdisjoint(seen["two"])  # nothing handled twice
    assert seen["two"], "the newcomer got no partition"
