"""``fraudstream bench features``: throughput, read latency and memory, on real Redis.

What it measures, each over ``runs`` fresh key prefixes (medians reported):

- **update + read throughput**: a month of typical traffic (``per_day``
  transactions per card, mostly at a handful of home terminals) through
  ``apply`` -> ``view`` -> ``save`` in batches, the stream agent's path
  without the model; also over the last ``tail`` transactions alone, when
  every card has its full 30-day history. The in-memory store runs the same
  workload in the same process as a baseline (the ratio is less noisy than
  the absolute number on a shared machine). For the whole path and for the
  store's part alone (apply, decoded state, save) it also reports the CPU
  time per transaction of this process and of Redis's main thread: on a
  shared machine these move much less than the throughput does.
- **API read latency**: ``peek`` + ``view`` one transaction at a time
  (the API's read, without HTTP), p50 and p99.
- **memory per card**: ``MEMORY USAGE`` of card keys after the month (one
  card in 7): median, mean, 95th percentile and largest.
- **bucketed terminal windows**: the error of the bucketed terminal counts
  against exact sliding windows, on the same traffic.
"""

from __future__ import annotations

import asyncio
import math
import random
import secrets
import statistics
import time
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from river import base

from features import terminal
from features.events import Transaction
from features.memory import MemoryFeatureStore
from features.redis_store import RedisFeatureStore
from features.store import FeatureStore, ScoredRecord
from features.vector import EntityState, view
from models.scoring import ModelHolder, ServingModel, score_batch
from stream.runtime.gc_settings import tune_for_streaming

T0 = 1_767_225_600.0
DAY = 86400.0


@dataclass(frozen=True)
class Workload:
    cards: int = 2000
    terminals: int = 500
    days: int = 30
    per_day: float = 2.0
    seed: int = 0

    def transactions(self) -> list[Transaction]:
        """The month's transactions in time order (Poisson per card, home terminals)."""
        rnd = random.Random(self.seed)
        out: list[Transaction] = []
        for c in range(self.cards):
            homes = [rnd.randrange(self.terminals) for _ in range(4)]
            t = T0 + rnd.random() * DAY / self.per_day
            while t < T0 + self.days * DAY:
                term = rnd.choice(homes) if rnd.random() < 0.9 else rnd.randrange(self.terminals)
                located = rnd.random() < 0.5
                out.append(
                    Transaction(
                        f"b{len(out)}",
                        f"card{c}",
                        f"term{term}",
                        round(rnd.lognormvariate(3.5, 1), 2),
                        t,
                        lat=48 + rnd.random() if located else None,
                        lon=2 + rnd.random() if located else None,
                    )
                )
                t += rnd.expovariate(self.per_day / DAY)
        out.sort(key=lambda x: x.event_time)
        return out


async def run_batches(store: FeatureStore, txns: Sequence[Transaction], batch: int) -> float:
    """Seconds to apply, view and save ``txns`` in batches, as the stream agent does."""
    holder = ModelHolder()
    holder.swap(ServingModel(0, _ConstantModel()))
    started = time.perf_counter()
    for i in range(0, len(txns), batch):
        await score_batch(store, holder, txns[i : i + batch])
    return time.perf_counter() - started


async def run_store_only(store: FeatureStore, txns: Sequence[Transaction], batch: int) -> float:
    """Seconds for the store's part alone: apply and read back each transaction's
    state (decoded), save a record; no vector is computed (a fixed one is saved)."""
    fixed = view(EntityState(), txns[0])
    started = time.perf_counter()
    for i in range(0, len(txns), batch):
        part = txns[i : i + batch]
        saves = []
        async for applied in store.apply_parts([part[j : j + 50] for j in range(0, len(part), 50)]):
            records = [
                (
                    a,
                    ScoredRecord(
                        a.txn.txn_id,
                        a.txn.card_id,
                        a.txn.terminal_id,
                        a.txn.event_time,
                        fixed,
                        0.0,
                        0,
                    ),
                )
                for a in applied
                if a.state is not None
            ]
            saves.append(asyncio.ensure_future(store.save(records)))
        await asyncio.gather(*saves)
    return time.perf_counter() - started


class _ConstantModel(base.Classifier):
    """Scores nothing: the benchmark measures features, not the model."""

    def learn_one(self, x: dict[str, float], y: bool) -> None:  # type: ignore[override]
        return None

    def predict_proba_one(self, x: dict[str, float]) -> dict[bool, float]:  # type: ignore[override]
        return {False: 1.0, True: 0.0}


async def read_latencies(store: FeatureStore, probes: Sequence[Transaction]) -> list[float]:
    """Seconds per ``peek`` + ``view``, one request at a time."""
    out = []
    for probe in probes:
        started = time.perf_counter()
        view(await store.peek(probe), probe)
        out.append(time.perf_counter() - started)
    return out


def bucket_error(txns: Sequence[Transaction]) -> dict[str, tuple[float, float]]:
    """Per terminal window: (mean relative error, mean absolute error) of bucketed counts."""
    by_terminal: dict[str, list[float]] = defaultdict(list)
    errors: dict[str, list[tuple[float, float]]] = defaultdict(list)
    buckets: dict[str, tuple[dict[int, int], tuple[int | None, ...]]] = {}
    for txn in txns:
        times = by_terminal[txn.terminal_id]
        state = buckets.get(txn.terminal_id, ({}, (None,) * len(terminal.WINDOWS)))
        counts = terminal.window_counts(state[0], state[1], txn.event_time)
        windows = len(terminal.WINDOWS)  # (the delayed windows' sums come after)
        for (name, length), got in zip(terminal.WINDOWS.items(), counts[:windows], strict=True):
            if txn.event_time >= T0 + 2 * length:  # the window (and its buckets) are full
                exact = len(times) - bisect_left(times, txn.event_time - length)
                if exact:
                    errors[name].append((abs(got - exact) / exact, abs(got - exact)))
        times.append(txn.event_time)
        buckets[txn.terminal_id] = terminal.step(state[0], state[1], txn.event_time)
    return {
        name: (statistics.fmean(e[0] for e in pairs), statistics.fmean(e[1] for e in pairs))
        for name, pairs in errors.items()
    }


async def _persistence(redis_url: str) -> str:
    """Whether the Redis benchmarked keeps an append-only file, and how often it syncs it."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        info = await client.info("persistence")
        if not int(info.get("aof_enabled", 0)):
            return "Redis without an append-only file"
        try:
            fsync = (await client.config_get("appendfsync")).get("appendfsync", "?")
        except RedisError:  # CONFIG may be disabled
            fsync = "?"
        return f"Redis with an append-only file (appendfsync {fsync})"
    finally:
        await client.aclose()


async def _redis_cpu(store: RedisFeatureStore) -> float:
    """Seconds of CPU Redis's main thread has used (commands, scripts, its own writes)."""
    info = await store.client.info("cpu")
    return float(info["used_cpu_user_main_thread"]) + float(info["used_cpu_sys_main_thread"])


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def _spread(sizes: Sequence[float]) -> dict[str, float]:
    """Median, mean, 95th percentile and largest of ``sizes``.

    >>> _spread([1, 2, 3, 10])
    {'median': 2.5, 'mean': 4.0, 'p95': 10, 'max': 10}
    """
    return {
        "median": statistics.median(sizes),
        "mean": statistics.fmean(sizes),
        "p95": _percentile(sizes, 0.95),
        "max": max(sizes),
    }


async def bench_features(
    redis_url: str,
    workload: Workload,
    runs: int = 3,
    batch: int = 500,
    tail: int = 20_000,
    say: Callable[[str], None] = print,
) -> dict[str, float]:
    """Run every measurement; print a report through ``say``; return the medians."""
    txns = workload.transactions()
    tail = min(tail, len(txns) // 2)
    tune_for_streaming()  # as the worker does once started (the workload is frozen with it)
    say(
        f"workload: {len(txns):,} transactions, {workload.cards:,} cards, "
        f"{workload.terminals} terminals, {workload.days} days, {workload.per_day}/card/day; "
        f"batches of {batch}; {runs} runs; {await _persistence(redis_url)}"
    )
    redis_all, redis_tail, memory_all, p50, p99, io = [], [], [], [], [], []
    mem: dict[str, list[float]] = defaultdict(list)
    py_us: list[float] = []
    redis_us: list[float] = []
    vector_py_us: list[float] = []
    vector_redis_us: list[float] = []
    for run in range(runs):
        store = RedisFeatureStore.from_url(redis_url, f"bench-{secrets.token_hex(4)}")
        try:
            redis_cpu, own_cpu = await _redis_cpu(store), time.process_time()
            seconds = await run_batches(store, txns[:-tail], batch)
            tail_seconds = await run_batches(store, txns[-tail:], batch)
            vector_py_us.append((time.process_time() - own_cpu) / len(txns) * 1e6)
            vector_redis_us.append((await _redis_cpu(store) - redis_cpu) / len(txns) * 1e6)
            redis_all.append(len(txns) / (seconds + tail_seconds))
            redis_tail.append(tail / tail_seconds)
            end = txns[-1].event_time + 60
            probes = [
                Transaction(
                    f"probe{i}", f"card{i % workload.cards}", f"term{i % 50}", 25.0, end + i * 0.001
                )
                for i in range(3000)
            ]
            latencies = await read_latencies(store, probes)
            p50.append(_percentile(latencies, 0.5) * 1e3)
            p99.append(_percentile(latencies, 0.99) * 1e3)
            keys = [store.keys.card(f"card{i}") for i in range(0, workload.cards, 7)]
            sizes = _spread([await store.client.memory_usage(k) or 0 for k in keys])
            for name, size in sizes.items():
                mem[name].append(size)
            # not kept: a month of records held in this process slowed the next runs
            memory_all.append(len(txns) / await run_batches(MemoryFeatureStore(), txns, batch))
            bare = RedisFeatureStore(store.client, f"bench-{secrets.token_hex(4)}")
            redis_cpu, own_cpu = await _redis_cpu(store), time.process_time()
            io.append(len(txns) / await run_store_only(bare, txns, batch))
            py_us.append((time.process_time() - own_cpu) / len(txns) * 1e6)
            redis_us.append((await _redis_cpu(store) - redis_cpu) / len(txns) * 1e6)
            say(
                f"run {run + 1}: redis {redis_all[-1]:,.0f} txn/s (CPU per transaction "
                f"{vector_py_us[-1]:.1f} us here + {vector_redis_us[-1]:.1f} us in Redis; "
                f"full-history tail {redis_tail[-1]:,.0f}; store alone {io[-1]:,.0f}, CPU per "
                f"transaction {py_us[-1]:.1f} us here + {redis_us[-1]:.1f} us in Redis), "
                f"memory store {memory_all[-1]:,.0f} txn/s; "
                f"read p50 {p50[-1]:.3f} ms p99 {p99[-1]:.3f} ms; card median "
                f"{sizes['median']:.0f} B, mean {sizes['mean']:.0f} B, p95 {sizes['p95']:.0f} B, "
                f"max {sizes['max']:.0f} B"
            )
            for prefix in (store.key_prefix, bare.key_prefix):
                await store.client.eval(
                    "for _, k in ipairs(redis.call('KEYS', ARGV[1])) do redis.call('DEL', k) end",
                    0,
                    f"{prefix}:*",
                )
        finally:
            await store.close()
    result = {
        "update_read_txn_per_s": statistics.median(redis_all),
        "update_read_full_history_txn_per_s": statistics.median(redis_tail),
        "memory_store_txn_per_s": statistics.median(memory_all),
        "store_update_read_txn_per_s": statistics.median(io),
        "read_p50_ms": statistics.median(p50),
        "read_p99_ms": statistics.median(p99),
        "card_memory_bytes": statistics.median(mem["median"]),
        "card_memory_mean_bytes": statistics.median(mem["mean"]),
        "card_memory_p95_bytes": statistics.median(mem["p95"]),
        "card_memory_max_bytes": max(mem["max"]),
        "python_cpu_us_per_txn": statistics.median(vector_py_us),
        "redis_cpu_us_per_txn": statistics.median(vector_redis_us),
        "store_python_cpu_us_per_txn": statistics.median(py_us),
        "store_redis_cpu_us_per_txn": statistics.median(redis_us),
    }
    say(
        f"median: store update + state read {result['store_update_read_txn_per_s']:,.0f} "
        f"txn/s (CPU per transaction {result['store_python_cpu_us_per_txn']:.1f} us here, "
        f"{result['store_redis_cpu_us_per_txn']:.1f} us in Redis); "
        f"with the vectors {result['update_read_txn_per_s']:,.0f} txn/s "
        f"({result['update_read_txn_per_s'] / result['memory_store_txn_per_s']:.2f} x the "
        f"in-memory store; CPU per transaction {result['python_cpu_us_per_txn']:.1f} us here, "
        f"{result['redis_cpu_us_per_txn']:.1f} us in Redis); full history "
        f"{result['update_read_full_history_txn_per_s']:,.0f} txn/s; API read p50 "
        f"{result['read_p50_ms']:.3f} ms, p99 {result['read_p99_ms']:.3f} ms; bytes per card "
        f"(MEMORY USAGE) median {result['card_memory_bytes']:.0f}, mean "
        f"{result['card_memory_mean_bytes']:.0f}, p95 {result['card_memory_p95_bytes']:.0f}, "
        f"max {result['card_memory_max_bytes']:.0f}"
    )
    month_and_more = Workload(cards=300, terminals=60, days=70, per_day=workload.per_day)
    for name, (relative, absolute) in bucket_error(month_and_more.transactions()).items():
        say(
            f"bucketed terminal_txn_count_{name}: mean error {relative:.1%} "
            f"({absolute:.2f} transactions) against the exact sliding window"
        )
    return result


def run(redis_url: str, workload: Workload, runs: int, batch: int) -> dict[str, float]:
    return asyncio.run(bench_features(redis_url, workload, runs, batch))
