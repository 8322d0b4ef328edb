"""Records the consumer skipped are found by their offsets and read again, on the real
Kafka and Redis (:mod:`stream.runtime.gaps`)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
from prometheus_client import CollectorRegistry

from stream.records import RawRecord
from stream.runtime.gaps import Gaps, Refetch
from tests.support import RealServers

pytestmark = pytest.mark.integration


@pytest.fixture
async def client(real_servers: RealServers) -> AsyncIterator[aioredis.Redis]:
    redis_client = aioredis.from_url(real_servers.redis_url)
    yield redis_client
    await redis_client.aclose()


def topic_with(real_servers: RealServers, count: int) -> str:
    """A new one-partition topic holding ``count`` records, values b"v0", b"v1", ..."""
    name = f"gaps-{secrets.token_hex(4)}"
    admin = KafkaAdminClient(bootstrap_servers=real_servers.kafka)
    admin.create_topics([NewTopic(name, 1, 1)])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=real_servers.kafka)
    for i in range(count):
        producer.send(name, key=b"k", value=f"v{i}".encode(), partition=0)
    producer.flush()
    producer.close()
    return name


def records(topic: str, offsets: range) -> list[RawRecord]:
    return [RawRecord(topic, 0, i, b"k", f"v{i}".encode()) for i in offsets]


async def test_a_batch_that_starts_past_the_watermark_gets_the_skipped_records_first(
        real_servers: RealServers, client: aioredis.Redis) -> None:
    topic = topic_with(real_servers, 10)
    registry = CollectorRegistry()
    gaps = Gaps(client, f"fs-{secrets.token_hex(4)}", "group", Refetch(real_servers.kafka),
                registry)
    first = records(topic, range(0, 3))
    assert await gaps.complete(first) == first  # nothing known yet: no gap
    await gaps.done(first)
    later = records(topic, range(7, 10))  # offsets 3 to 6 never reached the agent
    completed = await gaps.complete(later)
    assert [(r.offset, r.value) for r in completed] == [(i, f"v{i}".encode())
                                                        for i in range(3, 10)]
    assert registry.get_sample_value("fraudstream_records_recovered_total",
                                     {"topic": topic}) == 4.0
    await gaps.done(completed)
    again = records(topic, range(2, 5))  # a redelivery after a rebalance: no gap
    assert await gaps.complete(again) == again
    await gaps.done(again)  # and the watermark does not go back
    assert await gaps.complete(records(topic, range(10, 10))) == []
    assert int(await client.hget(f"{gaps.prefix}:{topic}", "0")) == 10
