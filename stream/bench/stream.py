"""``fraudstream bench stream``: the whole stream path on the real Kafka and Redis, against
the feature path alone, one process against split roles, in the same invocation.

First the **feature path** alone (the baseline of the ratio): the
scenario's transactions through the Redis feature store and the vector, in
batches, in this process, no Kafka (``stream.bench.features.run_batches``). Then
**transactions only**: the transactions are replayed into fresh topics and
one ``all`` process drains them; it is stopped (SIGTERM: how long it took),
the labels are replayed, and a new ``all`` process, with nothing left to
score, learns them: the **learner alone**, reported twice: over the labels
the stream had reached (arrived no later than the last transaction: learned
as they come) and over all of them (those past the stream's end wait until
the scorers are caught up, as :mod:`stream.runtime.waiting` says). Then for each layout (``all``:
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
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import redis

from features.events import Transaction
from features.keys import models_tag
from monitoring.scrape import read_metric
from producers.events import encode_events
from producers.generator import Simulation
from producers.replay import Replayer
from producers.scenario import load_scenario, run_scenario
from stream.bench.latency import latency, quantile
from stream.bench.workers import (
    LAYOUTS,
    Layout,
    LayoutResult,
    drain,
    first_learned,
    layout_settings,
    stopped_on_interrupt,
)
from stream.runtime.topics import ensure_topics, remove_topics
from stream.settings import Settings


@dataclass
class Baselines:
    """The feature path alone, and one process on transactions only, then on labels only."""

    features_per_s: float
    transactions_per_s: float
    #: The learner alone on the labels the stream had reached (their arrival no later than
    #: the last transaction), and on every label (with those past the stream's end, learned
    #: once the scorers are caught up: :meth:`stream.runtime.waiting.Waiting.passed`).
    learner_reached_per_s: float
    learner_per_s: float
    rss_mb: float
    stop_s: float


def bench_stream(
    base: Settings,
    scenario: str = "baseline",
    customers: int = 1000,
    days: float = 14.0,
    rate: float = 5000.0,
    seconds: float = 20.0,
    runs: int = 1,
    folder: Path | None = None,
    say: Callable[[str], object] = print,
) -> dict[str, LayoutResult]:
    """The feature path, transactions only, the learner alone, and the drain rate and
    latency of each layout of :data:`LAYOUTS`, in this invocation; medians over ``runs``."""
    with stopped_on_interrupt():
        return _bench_stream(base, scenario, customers, days, rate, seconds, runs, folder, say)


def _bench_stream(
    base: Settings,
    scenario: str,
    customers: int,
    days: float,
    rate: float,
    seconds: float,
    runs: int,
    folder: Path | None,
    say: Callable[[str], object],
) -> dict[str, LayoutResult]:
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
    say(
        f"{scenario}: {transactions:,} transactions and {labels:,} labels, "
        f"{customers} customers, {days:g} days; {base.kafka.partitions} partitions; "
        f"then {rate:g} transactions/s offered for {seconds:g}s; {runs} run(s)"
    )
    measured: dict[str, list[LayoutResult]] = {layout: [] for layout in LAYOUTS}
    baselines: list[Baselines] = []
    for run in range(runs):
        features = _feature_path(base, simulation)
        alone = _alone(base, txn_events, label_events, transactions, labels, reached, folder)
        baselines.append(Baselines(features, *alone))
        say(
            f"run {run + 1} feature path {features:,.0f} transactions/s; one process, "
            f"transactions only: {alone[0]:,.0f}/s ({alone[0] / features:.2f} x the feature "
            f"path), peak RSS {alone[3]:.0f} MB, SIGTERM to exit {alone[4]:.1f} s; "
            f"learner alone {alone[1]:,.0f} labels/s on the {reached:,} labels the stream "
            f"had reached, {alone[2]:,.0f} labels/s with the rest"
        )
        for layout, roles in LAYOUTS.items():
            result = _one(
                base, layout, roles, events, transactions, labels, rate, seconds, end, cards, folder
            )
            measured[layout].append(result)
            say(
                f"run {run + 1} {layout:5s} ({', '.join('+'.join(r) for r in roles)}): "
                f"drain {result.transactions_per_s:,.0f} transactions/s, "
                f"{result.labels_per_s:,.0f} labels/s, at most {result.waiting_max:,.0f} "
                f"labels waiting, peak RSS {result.rss_mb:.0f} MB; at {rate:g}/s offered: "
                f"p50 {result.p50_ms:,.0f} ms, p99 {result.p99_ms:,.0f} ms "
                f"({result.answered}/{result.offered} answered; generator "
                f"{100 * result.generator_cpu:.0f}% of a core, {result.offered_late:,} sent "
                f"late); kill -9 of "
                f"{'+'.join(roles[-1])}: worst latency {result.failover_s:.1f} s; SIGTERM to "
                f"exit {result.stop_s:.1f} s"
            )
    medians = {layout: _median(layout, results) for layout, results in measured.items()}
    one, split = medians["all"], medians["split"]
    load = os.getloadavg()

    def med(values: list[float]) -> float:
        return float(statistics.median(values))

    features = med([b.features_per_s for b in baselines])
    only = med([b.transactions_per_s for b in baselines])
    say(
        f"median feature path {features:,.0f} transactions/s; one process, transactions "
        f"only: {only:,.0f}/s = {only / features:.2f} x the feature path (peak RSS "
        f"{max(b.rss_mb for b in baselines):.0f} MB); learner alone "
        f"{med([b.learner_reached_per_s for b in baselines]):,.0f} labels/s on the labels "
        f"the stream had reached, {med([b.learner_per_s for b in baselines]):,.0f} with "
        f"those past its end"
    )
    for result in medians.values():
        say(
            f"median {result.layout:5s}: {result.transactions_per_s:,.0f} transactions/s "
            f"({result.transactions_per_s / features:.2f} x the feature path), "
            f"{result.labels_per_s:,.0f} labels/s, p50 {result.p50_ms:,.0f} ms, "
            f"p99 {result.p99_ms:,.0f} ms, failover {result.failover_s:.1f} s, at most "
            f"{result.waiting_max:,.0f} labels waiting, peak RSS {result.rss_mb:.0f} MB, "
            f"stop {result.stop_s:.1f} s"
        )
    say(
        f"split / all (the baseline): transactions "
        f"{split.transactions_per_s / one.transactions_per_s:.2f}x, labels "
        f"{split.labels_per_s / one.labels_per_s:.2f}x, p99 {split.p99_ms / one.p99_ms:.2f}x; "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores"
    )
    return medians


def _feature_path(base: Settings, simulation: Simulation) -> float:
    """Transactions/s of the feature path alone (store, vector, save; a constant model)
    on the scenario's transactions, in this process, on the same Redis."""
    from features.redis_store import RedisFeatureStore
    from stream.bench.features import run_batches
    from stream.sources import events_from_frames

    txns = [
        e
        for e in events_from_frames(simulation.transactions, simulation.labels.head(0))
        if isinstance(e, Transaction)
    ]

    settings = layout_settings(base, "features")

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


def _alone(
    base: Settings,
    txn_events: pl.DataFrame,
    label_events: pl.DataFrame,
    transactions: int,
    labels: int,
    reached: int,
    folder: Path,
) -> tuple[float, float, float, float, float]:
    """One ``all`` process draining transactions only; then, stopped, a new one learning
    their labels with nothing to score. Transactions/s, labels/s (of the first
    ``reached`` labels, of all), peak RSS (MB) of the first, and the seconds it took to
    exit on SIGTERM."""
    settings = layout_settings(base, "alone")
    ensure_topics(settings)
    topics = (settings.topics.name("transactions"), settings.topics.name("labels"))
    try:
        Replayer(settings.kafka.bootstrap_servers, topics).run(txn_events)
        processes = Layout(settings, [["all"]], folder)
        try:
            txn_rate, _, _ = drain(settings, transactions, 0, timeout=1800)
            time.sleep(settings.model.snapshot_every_seconds + 1)  # its stream time reported
            rss = processes.peak_rss_mb()
        finally:
            stop = processes.stop()
        Replayer(settings.kafka.bootstrap_servers, topics).run(label_events)
        processes = Layout(settings, [["all"]], folder)
        try:
            reached_rate, label_rate = first_learned(settings, labels, reached, timeout=1800)
        finally:
            processes.stop()
    finally:
        remove_run(settings)
    return txn_rate, reached_rate, label_rate, rss, stop


def _one(
    base: Settings,
    layout: str,
    roles: list[list[str]],
    events: pl.DataFrame,
    transactions: int,
    labels: int,
    rate: float,
    seconds: float,
    end: float,
    cards: list[str],
    folder: Path,
) -> LayoutResult:
    """One layout, once: replay into fresh topics, start the roles, measure, clean up."""
    settings = layout_settings(base, layout)
    ensure_topics(settings)
    Replayer(
        settings.kafka.bootstrap_servers,
        (settings.topics.name("transactions"), settings.topics.name("labels")),
    ).run(events)
    processes = Layout(settings, roles, folder)
    port = processes.learner_port()
    stop = float("nan")
    try:
        txn_rate, label_rate, waiting = drain(
            settings,
            transactions,
            labels,
            timeout=1800,
            waiting=lambda: read_metric(port, "fraudstream_labels_waiting"),
        )
        rss = processes.peak_rss_mb()
        latencies, offered = latency(settings, rate, seconds, end, cards)
        worst, failover = latency(
            settings, rate, 30.0, end + seconds, cards, "failover", processes.kill_one
        )
        if len(worst) < len(failover.sent):  # not a latency: some were never scored
            raise RuntimeError(
                f"after the kill -9 only {len(worst)} of "
                f"{len(failover.sent)} transactions were scored"
            )
    finally:
        stop = processes.stop()
        remove_run(settings)
    return LayoutResult(
        layout,
        txn_rate,
        label_rate,
        quantile(latencies, 0.5),
        quantile(latencies, 0.99),
        rate,
        len(latencies),
        len(offered.sent),
        max(worst, default=float("nan")) / 1000,
        waiting,
        rss,
        stop,
        offered.late,
        offered.cpu_s / seconds,
    )


def _median(layout: str, results: list[LayoutResult]) -> LayoutResult:
    def med(values: list[float]) -> float:
        return float(statistics.median(values))

    return LayoutResult(
        layout,
        med([r.transactions_per_s for r in results]),
        med([r.labels_per_s for r in results]),
        med([r.p50_ms for r in results]),
        med([r.p99_ms for r in results]),
        results[0].offered_per_s,
        min(r.answered for r in results),
        results[0].offered,
        med([r.failover_s for r in results]),
        max(r.waiting_max for r in results),
        max(r.rss_mb for r in results),
        max(r.stop_s for r in results),
        max(r.offered_late for r in results),
        med([r.generator_cpu for r in results]),
    )


def remove_run(settings: Settings) -> None:
    """Remove what a bench run wrote: its Redis keys and its Kafka topics."""
    remove_keys(settings)
    remove_topics(settings)


def remove_keys(settings: Settings) -> None:
    """Remove every Redis key under the settings' prefix (what a bench run wrote): the
    feature state's and the model registry's, whose keys start with its hash tag
    (:func:`features.keys.models_tag`)."""
    prefix = settings.redis.key_prefix
    client = redis.Redis.from_url(settings.redis.url)
    try:
        for match in (f"{prefix}:*", f"{models_tag(prefix)}*"):
            keys = list(client.scan_iter(match=match, count=1000))
            for start in range(0, len(keys), 1000):
                client.unlink(*keys[start : start + 1000])
    finally:
        client.close()
