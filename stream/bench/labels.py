"""``fraudstream bench labels``: the learner's label path on the real Redis, label by label
against in batches, in the same invocation.

Both modes learn the same labels of a simulated stream (its transactions
scored and saved first) with the same model: one by one (``Learner.learn``,
the baseline: a few round trips each) and in batches (``Learner.learn_many``:
a few round trips a batch). Each run uses its own Redis keys, removed after.
The median over runs is reported with the ratio and the machine's load.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import statistics
import time
from collections.abc import Callable, Sequence

from features.events import Label, Transaction
from features.redis_store import RedisFeatureStore
from models.learner import Learner
from models.registry import ModelRegistry
from models.scoring import ModelHolder, ServingModel, score_batch


def stream_events(customers: int, days: float) -> tuple[list[Transaction], list[Label]]:
    """A simulated baseline stream: its transactions, and the labels of those."""
    from producers.scenario import load_scenario, run_scenario
    from stream.sources import events_from_frames

    simulation, _ = run_scenario(load_scenario("baseline"), days=days, customers=customers)
    events = list(events_from_frames(simulation.transactions, simulation.labels))
    return (
        [e for e in events if isinstance(e, Transaction)],
        [e for e in events if isinstance(e, Label)],
    )


async def _learn_all(
    redis_url: str, txns: Sequence[Transaction], labels: Sequence[Label], batch: int | None
) -> float:
    """Seconds to learn ``labels`` (one by one when ``batch`` is None), after scoring."""
    prefix = f"bench-labels-{secrets.token_hex(4)}"
    store = RedisFeatureStore.from_url(redis_url, prefix)
    try:
        registry = ModelRegistry(store.client, prefix, b"bench-labels-key")
        learner = await Learner.start(registry, store, "logistic_regression", 100)
        holder = ModelHolder()
        holder.swap(ServingModel(learner.meta.version, learner.model))
        for start in range(0, len(txns), 500):
            await score_batch(store, holder, list(txns[start : start + 500]))
        started = time.perf_counter()
        if batch is None:
            for label in labels:
                await learner.learn(label)
        else:
            for start in range(0, len(labels), batch):
                await learner.learn_many(labels[start : start + batch])
        seconds = time.perf_counter() - started
        if learner.labels_learned != len(labels):
            raise RuntimeError(f"learned {learner.labels_learned} of {len(labels)} labels")
        return seconds
    finally:
        keys = [key async for key in store.client.scan_iter(match=f"{prefix}:*", count=1000)]
        for start in range(0, len(keys), 1000):
            await store.client.unlink(*keys[start : start + 1000])
        await store.close()


def bench_labels(
    redis_url: str,
    runs: int = 3,
    batch: int = 500,
    customers: int = 300,
    days: float = 12.0,
    say: Callable[[str], object] = print,
) -> dict[str, float]:
    """Labels learned per second, one by one and in batches of ``batch``; medians."""
    txns, labels = stream_events(customers, days)
    say(
        f"{len(labels):,} labels of {len(txns):,} transactions, {runs} runs, batches of "
        f"{batch}, Redis {redis_url}"
    )
    one, many = [], []
    for run in range(runs):
        one.append(len(labels) / asyncio.run(_learn_all(redis_url, txns, labels, None)))
        many.append(len(labels) / asyncio.run(_learn_all(redis_url, txns, labels, batch)))
        say(f"run {run + 1}: one by one {one[-1]:,.0f} labels/s, in batches {many[-1]:,.0f}")
    load = os.getloadavg()
    result = {
        "one_by_one_labels_per_s": statistics.median(one),
        "batched_labels_per_s": statistics.median(many),
        "load_1m": load[0],
    }
    result["ratio"] = result["batched_labels_per_s"] / result["one_by_one_labels_per_s"]
    say(
        f"median: one by one {result['one_by_one_labels_per_s']:,.0f} labels/s (the baseline), "
        f"in batches {result['batched_labels_per_s']:,.0f} labels/s: {result['ratio']:.2f}x; "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores"
    )
    return result
