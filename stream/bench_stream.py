"""``fraudstream bench stream``: the whole stream path on the real Kafka and Redis, one
process against split roles, in the same invocation.

For each layout (``all``: one process; ``split``: 2 scorers, a learner and a
monitor, each its own process) a scenario's transactions and labels are
first replayed into fresh topics at full speed; then the layout's workers
start, and the bench measures the **drain rate**: transactions per second
from the first score until every transaction is scored, and labels per
second until the champion has learned every label. Then, with the backlog
gone, new transactions are offered at a constant rate (open loop: sent on
schedule, whatever the answers) and the **event-to-score latency** is the
score record's Kafka timestamp minus its transaction's (both set when the
record is produced), p50 and p99. Last, with the same rate offered for 30 s,
the layout's last process (a scorer; for ``all`` the only process) is killed
with SIGKILL 5 s in and started again at once, as a supervisor would: the
worst latency of those transactions is how long scoring stopped
(**failover**). Every layout gets its own topics, group and Redis keys,
removed after.
"""

from __future__ import annotations

import json
import os
import secrets
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import redis
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from features.events import Transaction
from producers.replay import Replayer, encode_events
from producers.scenario import load_scenario, run_scenario
from producers.schema import TransactionRecord, encode
from stream.services.process import free_port
from stream.settings import Settings, to_env
from stream.topics import ensure_topics

#: The layouts compared: a name and the role sets of its processes.
LAYOUTS: dict[str, list[list[str]]] = {
    "all": [["all"]],
    "split": [["learn"], ["monitor"], ["score"], ["score"]],
}


@dataclass
class LayoutResult:
    layout: str
    transactions_per_s: float
    labels_per_s: float
    p50_ms: float
    p99_ms: float
    offered_per_s: float
    answered: int
    offered: int
    #: Worst event-to-score latency (s) while a process was killed and replaced.
    failover_s: float = float("nan")


def _settings(base: Settings, layout: str) -> Settings:
    tag = f"bench{layout}{secrets.token_hex(3)}"
    return base.model_copy(update={
        "topics": base.topics.model_copy(update={"prefix": f"{tag}-"}),
        "redis": base.redis.model_copy(update={"key_prefix": tag}),
        "worker": base.worker.model_copy(update={"app_id": tag}),
        "model": base.model.model_copy(update={"signing_key": secrets.token_hex(16)}),
    })


class _Layout:
    """The role processes of one layout, with their logs in ``folder``."""

    def __init__(self, settings: Settings, roles: list[list[str]], folder: Path) -> None:
        self.settings = settings
        self.roles = roles
        self.folder = folder
        self.children: list[subprocess.Popen[bytes]] = []
        folder.mkdir(parents=True, exist_ok=True)
        for i, role_set in enumerate(roles):
            self._spawn(role_set, i)

    def _spawn(self, role_set: list[str], i: int) -> None:
        env = {**os.environ, **to_env(self.settings),
               "FRAUDSTREAM_WORKER__METRICS_PORT": str(free_port())}
        args = [a for role in role_set for a in ("--role", role)]
        name = f"{self.settings.worker.app_id}-{i}-{'-'.join(role_set)}.log"
        with (self.folder / name).open("ab") as log:
            self.children.append(subprocess.Popen(
                [sys.executable, "-m", "stream.cli", "worker", *args], stdout=log,
                stderr=subprocess.STDOUT, env=env, start_new_session=True))

    def kill_one(self) -> None:
        """kill -9 the last scoring process; one of the same roles starts at once (as a
        supervisor would restart it): its partitions must go on being scored."""
        victim = self.children.pop()
        victim.kill()
        victim.wait()
        self._spawn(self.roles[len(self.children)], len(self.children))

    def stop(self) -> None:
        for child in self.children:
            child.terminate()
        for child in self.children:
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()


def _ends(consumer: KafkaConsumer, topic: str) -> int:
    parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
    return sum(consumer.end_offsets(parts).values()) if parts else 0


def _labels_learned(client: redis.Redis, prefix: str) -> int:
    latest = client.get(f"{prefix}:models:latest")
    if latest is None:
        return 0
    meta = client.hget(f"{prefix}:models:snap:{int(latest)}", "meta")
    return 0 if meta is None else int(json.loads(meta)["labels_learned"])


def _drain(settings: Settings, transactions: int, labels: int, timeout: float
           ) -> tuple[float, float]:
    """Transactions/s and labels/s from the first score until all are scored / learned."""
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_servers)
    client = redis.Redis.from_url(settings.redis.url)
    scores, dead = settings.topics.name("scores"), settings.topics.name("dead_letters")
    first = scored_at = learned_at = None
    deadline = time.monotonic() + timeout
    try:
        while (scored_at is None or learned_at is None) and time.monotonic() < deadline:
            now = time.monotonic()
            done = _ends(consumer, scores) + _ends(consumer, dead)  # too late: dead-lettered
            if first is None and done > 0:
                first = now
            if scored_at is None and done >= transactions:
                scored_at = now
            if learned_at is None and _labels_learned(client, settings.redis.key_prefix) >= labels:
                learned_at = now
            time.sleep(0.05)
    finally:
        consumer.close()
        client.close()
    if first is None or scored_at is None or learned_at is None:
        raise RuntimeError(f"the stream did not drain within {timeout:.0f}s")
    return (transactions / max(scored_at - first, 1e-3),
            labels / max(learned_at - first, 1e-3))


def _latency(settings: Settings, rate: float, seconds: float, start_time: float,
             cards: list[str], tag: str = "lat", fault: Callable[[], object] | None = None,
             fault_after: float = 5.0) -> tuple[list[float], int]:
    """Offer ``rate`` transactions/s for ``seconds`` (open loop); event-to-score latencies
    (ms) of those answered, and how many were offered. ``fault`` is called once,
    ``fault_after`` seconds in."""
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, linger_ms=0,
                             acks=1)
    topic = settings.topics.name("transactions")
    consumer = KafkaConsumer(settings.topics.name("scores"),
                             bootstrap_servers=settings.kafka.bootstrap_servers,
                             auto_offset_reset="latest", group_id=None,
                             consumer_timeout_ms=1000)
    consumer.poll(timeout_ms=1000)  # joined, positioned at the end, before we send
    sent: dict[str, float] = {}
    count = int(rate * seconds)

    def offer() -> None:
        begin = time.monotonic()
        faulted = fault is None
        for i in range(count):
            due = begin + i / rate
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            if not faulted and time.monotonic() - begin >= fault_after:
                assert fault is not None
                fault()
                faulted = True
            txn = Transaction(f"{tag}-{i}", cards[i % len(cards)], f"{tag}-terminal", 20.0,
                              start_time + i * 0.01)
            ms = int(time.time() * 1000)
            sent[txn.txn_id] = ms
            producer.send(topic, key=txn.card_id.encode(),
                          value=encode(TransactionRecord.from_event(txn)), timestamp_ms=ms)
        producer.flush()

    thread = threading.Thread(target=offer, daemon=True)
    thread.start()
    latencies: list[float] = []
    deadline = time.monotonic() + seconds + 60
    while time.monotonic() < deadline and len(latencies) < count:
        for message in consumer:
            txn_id = json.loads(message.value)["txn_id"]
            if txn_id in sent:
                latencies.append(message.timestamp - sent[txn_id])
            if len(latencies) >= count:
                break
    thread.join()
    consumer.close()
    producer.close()
    return latencies, count


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def bench_stream(base: Settings, scenario: str = "baseline", customers: int = 1000,
                 days: float = 14.0, rate: float = 500.0, seconds: float = 20.0,
                 runs: int = 1, folder: Path | None = None,
                 say: Callable[[str], object] = print) -> dict[str, LayoutResult]:
    """Drain rate and latency of each layout of :data:`LAYOUTS`, in this invocation;
    medians over ``runs``."""
    simulation, _ = run_scenario(load_scenario(scenario), days=days, customers=customers)
    events = encode_events(simulation.transactions, simulation.labels)
    transactions, labels = simulation.transactions.height, simulation.labels.height
    cards = simulation.transactions["card_id"].unique().sort().to_list()
    end = float(simulation.transactions["event_time"].max()) + 3600  # type: ignore[arg-type]
    folder = folder or (base.services.state_dir / "bench-stream").resolve()
    say(f"{scenario}: {transactions:,} transactions and {labels:,} labels, "
        f"{customers} customers, {days:g} days; {base.kafka.partitions} partitions; "
        f"then {rate:g} transactions/s offered for {seconds:g}s; {runs} run(s)")
    measured: dict[str, list[LayoutResult]] = {layout: [] for layout in LAYOUTS}
    for run in range(runs):
        for layout, roles in LAYOUTS.items():
            result = _one(base, layout, roles, events, transactions, labels, rate, seconds,
                          end, cards, folder)
            measured[layout].append(result)
            say(f"run {run + 1} {layout:5s} ({', '.join('+'.join(r) for r in roles)}): "
                f"drain {result.transactions_per_s:,.0f} transactions/s, "
                f"{result.labels_per_s:,.0f} labels/s; at {rate:g}/s offered: "
                f"p50 {result.p50_ms:,.0f} ms, p99 {result.p99_ms:,.0f} ms "
                f"({result.answered}/{result.offered} answered); kill -9 of "
                f"{'+'.join(roles[-1])}: worst latency {result.failover_s:.1f} s")
    medians = {layout: _median(layout, results) for layout, results in measured.items()}
    one, split = medians["all"], medians["split"]
    load = os.getloadavg()
    for result in medians.values():
        say(f"median {result.layout:5s}: {result.transactions_per_s:,.0f} transactions/s, "
            f"{result.labels_per_s:,.0f} labels/s, p50 {result.p50_ms:,.0f} ms, "
            f"p99 {result.p99_ms:,.0f} ms, failover {result.failover_s:.1f} s")
    say(f"split / all (the baseline): transactions "
        f"{split.transactions_per_s / one.transactions_per_s:.2f}x, labels "
        f"{split.labels_per_s / one.labels_per_s:.2f}x, p99 {split.p99_ms / one.p99_ms:.2f}x; "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores")
    return medians


def _one(base: Settings, layout: str, roles: list[list[str]], events: pl.DataFrame,
         transactions: int, labels: int, rate: float, seconds: float, end: float,
         cards: list[str], folder: Path) -> LayoutResult:
    """One layout, once: replay into fresh topics, start the roles, measure, clean up."""
    settings = _settings(base, layout)
    ensure_topics(settings)
    Replayer(settings.kafka.bootstrap_servers, (settings.topics.name("transactions"),
                                                settings.topics.name("labels"))).run(events)
    processes = _Layout(settings, roles, folder)
    try:
        txn_rate, label_rate = _drain(settings, transactions, labels, timeout=1800)
        latencies, offered = _latency(settings, rate, seconds, end, cards)
        worst, sent = _latency(settings, rate, 30.0, end + seconds, cards, "failover",
                               processes.kill_one)
        if len(worst) < sent:  # not a latency: some were never scored
            raise RuntimeError(f"after the kill -9 only {len(worst)} of {sent} transactions "
                               "were scored")
    finally:
        processes.stop()
        _clean(settings)
    return LayoutResult(layout, txn_rate, label_rate, _quantile(latencies, 0.5),
                        _quantile(latencies, 0.99), rate, len(latencies), offered,
                        max(worst, default=float("nan")) / 1000)


def _median(layout: str, results: list[LayoutResult]) -> LayoutResult:
    def med(values: list[float]) -> float:
        return float(statistics.median(values))
    return LayoutResult(layout, med([r.transactions_per_s for r in results]),
                        med([r.labels_per_s for r in results]),
                        med([r.p50_ms for r in results]), med([r.p99_ms for r in results]),
                        results[0].offered_per_s, min(r.answered for r in results),
                        results[0].offered, med([r.failover_s for r in results]))


def _clean(settings: Settings) -> None:
    client = redis.Redis.from_url(settings.redis.url)
    try:
        keys = list(client.scan_iter(match=f"{settings.redis.key_prefix}:*", count=1000))
        for start in range(0, len(keys), 1000):
            client.unlink(*keys[start:start + 1000])
    finally:
        client.close()
