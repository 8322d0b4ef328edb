"""The bench's open-loop load: transactions offered at a constant rate, sent on schedule
whatever the answers, and the event-to-score latency read back from the scores topic."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer
from kafka import KafkaConsumer

from features.events import Transaction
from producers.schema import TransactionRecord, encode
from stream.runtime.output import produce
from stream.runtime.records import Emit
from stream.settings import Settings

#: A record sent this much after its turn counts as late (the generator fell behind).
LATE_SECONDS = 0.005


@dataclass
class Offered:
    """What the load generator sent: each transaction's send time (ms since the epoch),
    how many went out late, and the generator's own CPU seconds."""

    sent: dict[str, float]
    late: int
    cpu_s: float


#: The generator wakes at most this often (s): what is due then goes out as one producer
#: batch per partition.
TICK_SECONDS = 0.001


def _offer(
    bootstrap: str,
    topic: str,
    rate: float,
    count: int,
    start_time: float,
    cards: list[str],
    tag: str,
) -> Offered:
    """Send ``count`` transactions at ``rate`` per second, on schedule whatever happens
    (open loop), each encoded beforehand. Run in a process of its own: in the bench's
    process its sends and the reading of the scores wait for each other's turn of the
    interpreter, and that wait reads as the stream's latency (docs/performance.md)."""
    records = []
    for i in range(count):
        txn = Transaction(
            f"{tag}-{i}", cards[i % len(cards)], f"{tag}-terminal", 20.0, start_time + i * 0.01
        )
        records.append(
            (
                txn.txn_id,
                Emit(topic, txn.card_id.encode(), encode(TransactionRecord.from_event(txn))),
            )
        )
    return asyncio.run(_offer_records(bootstrap, rate, records))


async def _offer_records(bootstrap: str, rate: float, records: list[tuple[str, Emit]]) -> Offered:
    """The sending of :func:`_offer`: each wake-up hands over every record due by then, as
    the worker hands over its outputs (one producer batch per partition: kafka-python's
    send per record took 83 % of a core at 5,000/s, beside the stream it measured)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0, acks=1)
    await producer.start()
    sent: dict[str, float] = {}
    deliveries: list[Any] = []
    late = sent_upto = 0
    cpu = time.process_time()
    begin = time.monotonic()
    try:
        while sent_upto < len(records):
            now = time.monotonic()
            due = min(len(records), int((now - begin) * rate) + 1)
            if due > sent_upto:
                if now - (begin + sent_upto / rate) > LATE_SECONDS:
                    late += due - sent_upto
                ms = time.time() * 1000
                for txn_id, _ in records[sent_upto:due]:
                    sent[txn_id] = ms
                deliveries += await produce(producer, [e for _, e in records[sent_upto:due]])
                sent_upto = due
            await asyncio.sleep(max(TICK_SECONDS, begin + sent_upto / rate - time.monotonic()))
        await asyncio.gather(*deliveries)
    finally:
        await producer.stop()
    return Offered(sent, late, time.process_time() - cpu)


def latency(
    settings: Settings,
    rate: float,
    seconds: float,
    start_time: float,
    cards: list[str],
    tag: str = "lat",
    fault: Callable[[], object] | None = None,
    fault_after: float = 5.0,
) -> tuple[list[float], Offered]:
    """Offer ``rate`` transactions/s for ``seconds`` (open loop, from a process of its own:
    :func:`_offer`); event-to-score latencies (ms) of those answered, and what was
    offered. ``fault`` is called once, ``fault_after`` seconds in."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    consumer = KafkaConsumer(
        settings.topics.name("scores"),
        bootstrap_servers=settings.kafka.bootstrap_servers,
        auto_offset_reset="latest",
        group_id=None,
        consumer_timeout_ms=1000,
    )
    consumer.poll(timeout_ms=1000)  # joined, positioned at the end, before we send
    count = int(rate * seconds)
    scored: dict[str, float] = {}
    prefix = f"{tag}-"
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        pool.submit(int).result()  # started (spawned and imported) before the clock runs
        offering = pool.submit(
            _offer,
            settings.kafka.bootstrap_servers,
            settings.topics.name("transactions"),
            rate,
            count,
            start_time,
            cards,
            tag,
        )
        timer = threading.Timer(fault_after, fault) if fault is not None else None
        if timer is not None:
            timer.start()
        deadline = time.monotonic() + seconds + 60
        while time.monotonic() < deadline and len(scored) < count:
            for message in consumer:
                txn_id = json.loads(message.value)["txn_id"]
                if txn_id.startswith(prefix):
                    scored[txn_id] = message.timestamp
                if len(scored) >= count:
                    break
        offered = offering.result()
        if timer is not None:
            timer.join()
    consumer.close()
    return [at - offered.sent[txn_id] for txn_id, at in scored.items()], offered


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")
