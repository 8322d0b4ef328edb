"""``fraudstream bench stream``: the whole stream path on the real Kafka and Redis, against
the feature path alone, one process against split roles, in the same invocation.

First the **feature path** alone (the baseline of the ratio): the
scenario's transactions through the Redis feature store and the vector, in
batches, in this process, no Kafka (``stream.bench.run_batches``). Then
**transactions only**: the transactions are replayed into fresh topics and
one ``all`` process drains them; it is stopped (SIGTERM: how long it took),
the labels are replayed, and a new ``all`` process, with nothing left to
score, learns them: the **learner alone**, reported twice: over the labels
the stream had reached (arrived no later than the last transaction: learned
as they come) and over all of them (those past the stream's end wait until
the scorers are caught up, as :mod:`stream.waiting` says). Then for each layout (``all``:
one process; ``split``: 2 scorers, a learner and a monitor, each its own
process) the transactions and their labels are replayed into fresh topics
at full speed; then the layout's workers start, and the bench measures the
**drain rate**: transactions per second from the first score until every
transaction is scored, and labels per second until the champion has learned
every label; the most labels waiting on the way, and each process's peak
RSS. Then, with the backlog
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

import asyncio
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import polars as pl
import redis
from aiokafka import AIOKafkaProducer
from kafka import KafkaConsumer, TopicPartition

from features.events import Transaction
from features.keys import models_tag
from monitoring.scrape import read_metric
from producers.generator import Simulation
from producers.replay import Replayer, encode_events
from producers.scenario import load_scenario, run_scenario
from producers.schema import TransactionRecord, encode
from stream.records import Emit
from stream.runtime.output import produce
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
    #: The most labels waiting at once during the drain.
    waiting_max: float = float("nan")
    #: The highest peak RSS of the layout's processes (MB).
    rss_mb: float = float("nan")
    #: Seconds from SIGTERM until the slowest process exited.
    stop_s: float = float("nan")
    #: Of the offered transactions, how many the generator sent more than
    #: LATE_SECONDS after their turn, and the generator's CPU (share of one core): a
    #: generator that could not keep its schedule measured the machine, not the stream.
    offered_late: int = 0
    generator_cpu: float = float("nan")


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

    #: Layouts whose processes run (each in a session of its own, so a Ctrl-C in the
    #: terminal reaches the bench only): :func:`_stopped_on_interrupt` stops them.
    running: ClassVar[weakref.WeakSet[_Layout]] = weakref.WeakSet()

    def __init__(self, settings: Settings, roles: list[list[str]], folder: Path) -> None:
        self.settings = settings
        self.roles = roles
        self.folder = folder
        self.children: list[subprocess.Popen[bytes]] = []
        self.ports: list[int] = []
        _Layout.running.add(self)
        folder.mkdir(parents=True, exist_ok=True)
        for i, role_set in enumerate(roles):
            self._spawn(role_set, i)

    def _spawn(self, role_set: list[str], i: int) -> None:
        port = free_port()
        env = {**os.environ, **to_env(self.settings),
               "FRAUDSTREAM_WORKER__METRICS_PORT": str(port)}
        args = [a for role in role_set for a in ("--role", role)]
        name = f"{self.settings.worker.app_id}-{i}-{'-'.join(role_set)}.log"
        with (self.folder / name).open("ab") as log:
            self.children.append(subprocess.Popen(
                [sys.executable, "-m", "stream.cli", "worker", *args], stdout=log,
                stderr=subprocess.STDOUT, env=env, start_new_session=True))
        self.ports[i:] = [port]

    def learner_port(self) -> int:
        """The metrics port of the process with the learn (or all) role."""
        return next(port for port, roles in zip(self.ports, self.roles, strict=False)
                    if {"learn", "all"} & set(roles))

    def peak_rss_mb(self) -> float:
        """The highest peak resident memory (VmHWM) of the running processes."""
        peaks = [0.0]
        for child in self.children:
            try:
                status = Path(f"/proc/{child.pid}/status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    peaks.append(int(line.split()[1]) / 1024)
        return max(peaks)

    def kill_one(self) -> None:
        """kill -9 the last scoring process; one of the same roles starts at once (as a
        supervisor would restart it): its partitions must go on being scored."""
        victim = self.children.pop()
        victim.kill()
        victim.wait()
        self._spawn(self.roles[len(self.children)], len(self.children))

    def stop(self) -> float:
        """SIGTERM to every process; seconds until the last exited (killed after 60)."""
        began = time.monotonic()
        for child in self.children:
            child.terminate()
        for child in self.children:
            try:
                child.wait(timeout=max(0.1, 60 - (time.monotonic() - began)))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        _Layout.running.discard(self)
        return time.monotonic() - began


@contextmanager
def _stopped_on_interrupt() -> Iterator[None]:
    """On SIGINT or SIGTERM, kill every running layout's processes and exit (130): a
    KeyboardInterrupt raised inside kafka-python's I/O loop is kept by its task, not
    raised, and the bench went on starting workers."""
    def stop(signum: int, _frame: object) -> None:
        for layout in list(_Layout.running):
            for child in layout.children:
                child.kill()
        print(f"fraudstream bench: interrupted (signal {signum}); its workers were killed, "
              "its topics and keys were left", file=sys.stderr, flush=True)
        os._exit(130)

    if threading.current_thread() is not threading.main_thread():  # (no signals there)
        yield
        return
    before = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def _ends(consumer: KafkaConsumer, topic: str) -> int:
    parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
    return sum(consumer.end_offsets(parts).values()) if parts else 0


def _labels_learned(client: redis.Redis, prefix: str) -> int:
    latest = client.get(f"{models_tag(prefix)}:latest")
    if latest is None:
        return 0
    meta = client.hget(f"{models_tag(prefix)}:snap:{int(latest)}", "meta")
    return 0 if meta is None else int(json.loads(meta)["labels_learned"])


def _drain(settings: Settings, transactions: int, labels: int, timeout: float,
           waiting: Callable[[], float | None] = lambda: None) -> tuple[float, float, float]:
    """Transactions/s and labels/s from the first score until all are scored / learned
    (``labels`` 0: transactions only), and the most labels ``waiting`` on the way."""
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_servers)
    client = redis.Redis.from_url(settings.redis.url)
    scores, dead = settings.topics.name("scores"), settings.topics.name("dead_letters")
    first = scored_at = learned_at = None
    most = 0.0
    deadline = time.monotonic() + timeout
    try:
        while (scored_at is None or learned_at is None) and time.monotonic() < deadline:
            now = time.monotonic()
            done = _ends(consumer, scores) + _ends(consumer, dead)  # too late: dead-lettered
            if first is None and (done > 0 or transactions == 0):
                first = now
            if scored_at is None and done >= transactions:
                scored_at = now
            if learned_at is None and (
                    labels == 0 or _labels_learned(client, settings.redis.key_prefix) >= labels):
                learned_at = now
            most = max(most, waiting() or 0.0)
            time.sleep(0.05)
    finally:
        consumer.close()
        client.close()
    if first is None or scored_at is None or learned_at is None:
        raise RuntimeError(f"the stream did not drain within {timeout:.0f}s")
    return (transactions / max(scored_at - first, 1e-3),
            labels / max(learned_at - first, 1e-3), most)


def _rate(count: int, seconds: float) -> float:
    """``count`` per second over ``seconds``; NaN when nothing was left to time.

    >>> _rate(500, 0.25), _rate(0, 0.0)
    (2000.0, nan)
    """
    return count / max(seconds, 1e-3) if count > 0 else float("nan")


def _first_learned(settings: Settings, labels: int, reached: int,
                   timeout: float) -> tuple[float, float]:
    """Labels/s of a learner from its first snapshot until the first ``reached`` labels
    (those the stream had reached) are learned, and until every label is."""
    client = redis.Redis.from_url(settings.redis.url)
    prefix = settings.redis.key_prefix
    first = reached_at = None
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            learned = _labels_learned(client, prefix)
            now = time.monotonic()
            if first is None and learned > 0:
                first = (now, learned)
            if first is not None and reached_at is None and learned >= reached:
                reached_at = now
            if learned >= labels and first is not None and reached_at is not None:
                # NaN: learned before the first look (a run too small to time)
                return (_rate(reached - first[1], reached_at - first[0]),
                        _rate(labels - first[1], now - first[0]))
            time.sleep(0.05)
    finally:
        client.close()
    raise RuntimeError(f"the learner did not learn {labels} labels within {timeout:.0f}s")


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


def _offer(bootstrap: str, topic: str, rate: float, count: int, start_time: float,
           cards: list[str], tag: str) -> Offered:
    """Send ``count`` transactions at ``rate`` per second, on schedule whatever happens
    (open loop), each encoded beforehand. Run in a process of its own: in the bench's
    process its sends and the reading of the scores wait for each other's turn of the
    interpreter, and that wait reads as the stream's latency (docs/performance.md)."""
    records = []
    for i in range(count):
        txn = Transaction(f"{tag}-{i}", cards[i % len(cards)], f"{tag}-terminal", 20.0,
                          start_time + i * 0.01)
        records.append((txn.txn_id, Emit(topic, txn.card_id.encode(),
                                         encode(TransactionRecord.from_event(txn)))))
    return asyncio.run(_offer_records(bootstrap, rate, records))


async def _offer_records(bootstrap: str, rate: float,
                         records: list[tuple[str, Emit]]) -> Offered:
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


def _latency(settings: Settings, rate: float, seconds: float, start_time: float,
             cards: list[str], tag: str = "lat", fault: Callable[[], object] | None = None,
             fault_after: float = 5.0) -> tuple[list[float], Offered]:
    """Offer ``rate`` transactions/s for ``seconds`` (open loop, from a process of its own:
    :func:`_offer`); event-to-score latencies (ms) of those answered, and what was
    offered. ``fault`` is called once, ``fault_after`` seconds in."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    consumer = KafkaConsumer(settings.topics.name("scores"),
                             bootstrap_servers=settings.kafka.bootstrap_servers,
                             auto_offset_reset="latest", group_id=None,
                             consumer_timeout_ms=1000)
    consumer.poll(timeout_ms=1000)  # joined, positioned at the end, before we send
    count = int(rate * seconds)
    scored: dict[str, float] = {}
    prefix = f"{tag}-"
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        pool.submit(int).result()  # started (spawned and imported) before the clock runs
        offering = pool.submit(_offer, settings.kafka.bootstrap_servers,
                               settings.topics.name("transactions"), rate, count,
                               start_time, cards, tag)
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


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


@dataclass
class Baselines:
    """The feature path alone, and one process on transactions only, then on labels only."""

    features_per_s: float
    transactions_per_s: float
    #: The learner alone on the labels the stream had reached (their arrival no later than
    #: the last transaction), and on every label (with those past the stream's end, learned
    #: once the scorers are caught up: :meth:`stream.waiting.Waiting.passed`).
    learner_reached_per_s: float
    learner_per_s: float
    rss_mb: float
    stop_s: float


def bench_stream(base: Settings, scenario: str = "baseline", customers: int = 1000,
                 days: float = 14.0, rate: float = 5000.0, seconds: float = 20.0,
                 runs: int = 1, folder: Path | None = None,
                 say: Callable[[str], object] = print) -> dict[str, LayoutResult]:
    """The feature path, transactions only, the learner alone, and the drain rate and
    latency of each layout of :data:`LAYOUTS`, in this invocation; medians over ``runs``."""
    with _stopped_on_interrupt():
        return _bench_stream(base, scenario, customers, days, rate, seconds, runs, folder, say)


def _bench_stream(base: Settings, scenario: str, customers: int, days: float, rate: float,
                  seconds: float, runs: int, folder: Path | None,
                  say: Callable[[str], object]) -> dict[str, LayoutResult]:
    simulation, _ = run_scenario(load_scenario(scenario), days=days, customers=customers)
    txn_events = encode_events(simulation.transactions, simulation.labels.head(0))
    label_events = encode_events(simulation.transactions.head(0), simulation.labels)
    events = encode_events(simulation.transactions, simulation.labels)
    transactions, labels = simulation.transactions.height, simulation.labels.height
    cards = simulation.transactions["card_id"].unique().sort().to_list()
    last = float(simulation.transactions["event_time"].max())  # type: ignore[arg-type]
    reached = simulation.labels.filter(pl.col("event_time") <= last).height
    end = last + 3600
    folder = folder or (base.services.state_dir / "bench-stream").resolve()
    say(f"{scenario}: {transactions:,} transactions and {labels:,} labels, "
        f"{customers} customers, {days:g} days; {base.kafka.partitions} partitions; "
        f"then {rate:g} transactions/s offered for {seconds:g}s; {runs} run(s)")
    measured: dict[str, list[LayoutResult]] = {layout: [] for layout in LAYOUTS}
    baselines: list[Baselines] = []
    for run in range(runs):
        features = _feature_path(base, simulation)
        alone = _alone(base, txn_events, label_events, transactions, labels, reached, folder)
        baselines.append(Baselines(features, *alone))
        say(f"run {run + 1} feature path {features:,.0f} transactions/s; one process, "
            f"transactions only: {alone[0]:,.0f}/s ({alone[0] / features:.2f} x the feature "
            f"path), peak RSS {alone[3]:.0f} MB, SIGTERM to exit {alone[4]:.1f} s; "
            f"learner alone {alone[1]:,.0f} labels/s on the {reached:,} labels the stream "
            f"had reached, {alone[2]:,.0f} labels/s with the rest")
        for layout, roles in LAYOUTS.items():
            result = _one(base, layout, roles, events, transactions, labels, rate, seconds,
                          end, cards, folder)
            measured[layout].append(result)
            say(f"run {run + 1} {layout:5s} ({', '.join('+'.join(r) for r in roles)}): "
                f"drain {result.transactions_per_s:,.0f} transactions/s, "
                f"{result.labels_per_s:,.0f} labels/s, at most {result.waiting_max:,.0f} "
                f"labels waiting, peak RSS {result.rss_mb:.0f} MB; at {rate:g}/s offered: "
                f"p50 {result.p50_ms:,.0f} ms, p99 {result.p99_ms:,.0f} ms "
                f"({result.answered}/{result.offered} answered; generator "
                f"{100 * result.generator_cpu:.0f}% of a core, {result.offered_late:,} sent "
                f"late); kill -9 of "
                f"{'+'.join(roles[-1])}: worst latency {result.failover_s:.1f} s; SIGTERM to "
                f"exit {result.stop_s:.1f} s")
    medians = {layout: _median(layout, results) for layout, results in measured.items()}
    one, split = medians["all"], medians["split"]
    load = os.getloadavg()

    def med(values: list[float]) -> float:
        return float(statistics.median(values))

    features = med([b.features_per_s for b in baselines])
    only = med([b.transactions_per_s for b in baselines])
    say(f"median feature path {features:,.0f} transactions/s; one process, transactions "
        f"only: {only:,.0f}/s = {only / features:.2f} x the feature path (peak RSS "
        f"{max(b.rss_mb for b in baselines):.0f} MB); learner alone "
        f"{med([b.learner_reached_per_s for b in baselines]):,.0f} labels/s on the labels "
        f"the stream had reached, {med([b.learner_per_s for b in baselines]):,.0f} with "
        f"those past its end")
    for result in medians.values():
        say(f"median {result.layout:5s}: {result.transactions_per_s:,.0f} transactions/s "
            f"({result.transactions_per_s / features:.2f} x the feature path), "
            f"{result.labels_per_s:,.0f} labels/s, p50 {result.p50_ms:,.0f} ms, "
            f"p99 {result.p99_ms:,.0f} ms, failover {result.failover_s:.1f} s, at most "
            f"{result.waiting_max:,.0f} labels waiting, peak RSS {result.rss_mb:.0f} MB, "
            f"stop {result.stop_s:.1f} s")
    say(f"split / all (the baseline): transactions "
        f"{split.transactions_per_s / one.transactions_per_s:.2f}x, labels "
        f"{split.labels_per_s / one.labels_per_s:.2f}x, p99 {split.p99_ms / one.p99_ms:.2f}x; "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores")
    return medians


def _feature_path(base: Settings, simulation: Simulation) -> float:
    """Transactions/s of the feature path alone (store, vector, save; a constant model)
    on the scenario's transactions, in this process, on the same Redis."""
    from features.redis_store import RedisFeatureStore
    from stream.bench import run_batches
    from stream.embedded import events_from_frames

    txns = [e for e in events_from_frames(simulation.transactions, simulation.labels.head(0))
            if isinstance(e, Transaction)]

    settings = _settings(base, "features")

    async def run() -> float:  # under the settings' keys: removed after, as every layout's
        store = RedisFeatureStore.from_url(base.redis.url, settings.redis.key_prefix)
        try:
            return len(txns) / await run_batches(store, txns, base.worker.batch_max)
        finally:
            await store.close()

    try:
        return asyncio.run(run())
    finally:
        remove_keys(settings)


def _alone(base: Settings, txn_events: pl.DataFrame, label_events: pl.DataFrame,
           transactions: int, labels: int, reached: int,
           folder: Path) -> tuple[float, float, float, float, float]:
    """One ``all`` process draining transactions only; then, stopped, a new one learning
    their labels with nothing to score. Transactions/s, labels/s (of the first
    ``reached`` labels, of all), peak RSS (MB) of the first, and the seconds it took to
    exit on SIGTERM."""
    settings = _settings(base, "alone")
    ensure_topics(settings)
    topics = (settings.topics.name("transactions"), settings.topics.name("labels"))
    try:
        Replayer(settings.kafka.bootstrap_servers, topics).run(txn_events)
        processes = _Layout(settings, [["all"]], folder)
        try:
            txn_rate, _, _ = _drain(settings, transactions, 0, timeout=1800)
            time.sleep(settings.model.snapshot_every_seconds + 1)  # its stream time reported
            rss = processes.peak_rss_mb()
        finally:
            stop = processes.stop()
        Replayer(settings.kafka.bootstrap_servers, topics).run(label_events)
        processes = _Layout(settings, [["all"]], folder)
        try:
            reached_rate, label_rate = _first_learned(settings, labels, reached,
                                                       timeout=1800)
        finally:
            processes.stop()
    finally:
        remove_keys(settings)
    return txn_rate, reached_rate, label_rate, rss, stop


def _one(base: Settings, layout: str, roles: list[list[str]], events: pl.DataFrame,
         transactions: int, labels: int, rate: float, seconds: float, end: float,
         cards: list[str], folder: Path) -> LayoutResult:
    """One layout, once: replay into fresh topics, start the roles, measure, clean up."""
    settings = _settings(base, layout)
    ensure_topics(settings)
    Replayer(settings.kafka.bootstrap_servers, (settings.topics.name("transactions"),
                                                settings.topics.name("labels"))).run(events)
    processes = _Layout(settings, roles, folder)
    port = processes.learner_port()
    stop = float("nan")
    try:
        txn_rate, label_rate, waiting = _drain(
            settings, transactions, labels, timeout=1800,
            waiting=lambda: read_metric(port, "fraudstream_labels_waiting"))
        rss = processes.peak_rss_mb()
        latencies, offered = _latency(settings, rate, seconds, end, cards)
        worst, failover = _latency(settings, rate, 30.0, end + seconds, cards, "failover",
                                   processes.kill_one)
        if len(worst) < len(failover.sent):  # not a latency: some were never scored
            raise RuntimeError(f"after the kill -9 only {len(worst)} of "
                               f"{len(failover.sent)} transactions were scored")
    finally:
        stop = processes.stop()
        remove_keys(settings)
    return LayoutResult(layout, txn_rate, label_rate, _quantile(latencies, 0.5),
                        _quantile(latencies, 0.99), rate, len(latencies), len(offered.sent),
                        max(worst, default=float("nan")) / 1000, waiting, rss, stop,
                        offered.late, offered.cpu_s / seconds)


def _median(layout: str, results: list[LayoutResult]) -> LayoutResult:
    def med(values: list[float]) -> float:
        return float(statistics.median(values))
    return LayoutResult(layout, med([r.transactions_per_s for r in results]),
                        med([r.labels_per_s for r in results]),
                        med([r.p50_ms for r in results]), med([r.p99_ms for r in results]),
                        results[0].offered_per_s, min(r.answered for r in results),
                        results[0].offered, med([r.failover_s for r in results]),
                        max(r.waiting_max for r in results), max(r.rss_mb for r in results),
                        max(r.stop_s for r in results), max(r.offered_late for r in results),
                        med([r.generator_cpu for r in results]))


def remove_keys(settings: Settings) -> None:
    """Remove every Redis key under the settings' prefix (what a bench run wrote)."""
    client = redis.Redis.from_url(settings.redis.url)
    try:
        keys = list(client.scan_iter(match=f"{settings.redis.key_prefix}:*", count=1000))
        for start in range(0, len(keys), 1000):
            client.unlink(*keys[start:start + 1000])
    finally:
        client.close()
