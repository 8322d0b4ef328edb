"""``fraudstream bench features --redis-cluster N``: one Redis against a Redis Cluster.

The same month of traffic as ``bench features`` (:class:`stream.bench.features.Workload`)
goes through the stream agent's feature path (apply, view, save; no model)
on a single Redis and on a cluster of N masters, alternately, in one
invocation. For each it reports throughput, the Redis CPU per transaction
(main threads: of the single Redis, of each master and of all masters
together) and the keys written per transaction.

On this machine (2 cores) a cluster's throughput cannot grow: every master
shares the cores with the benchmark. What carries over to a real cluster is
the CPU per transaction per master; from it the report projects, on paper,
the ceiling of a cluster with more masters (the busiest master saturating
first; slots spread evenly).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import statistics
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis

from features.redis_cluster_store import RedisClusterFeatureStore
from features.redis_store import RedisFeatureStore
from stream.bench.features import Workload, run_batches
from stream.runtime.gc_settings import tune_for_streaming

#: Cluster sizes the ceiling is projected for.
PROJECTED = (3, 6, 12)


async def _cpu(node: aioredis.Redis) -> float:
    """Seconds of CPU the node's main thread has used."""
    info = await node.info("cpu")
    return float(info["used_cpu_user_main_thread"]) + float(info["used_cpu_sys_main_thread"])


async def _drop(node: aioredis.Redis, prefix: str) -> None:
    """Delete the node's keys under ``prefix`` (one key per command: any slot)."""
    pipe = node.pipeline(transaction=False)
    async for key in node.scan_iter(match=f"{prefix}:*", count=1000):
        pipe.unlink(key)
        if len(pipe) >= 1000:
            await pipe.execute()
    await pipe.execute()


async def _measure(
    store: RedisFeatureStore, nodes: list[aioredis.Redis], txns: list[Any], batch: int
) -> tuple[float, list[float], float]:
    """Throughput, CPU per transaction of each node (µs) and keys per transaction."""
    cpu = [await _cpu(node) for node in nodes]
    keys = [await node.dbsize() for node in nodes]
    seconds = await run_batches(store, txns, batch)
    used = [
        (await _cpu(node) - before) / len(txns) * 1e6
        for node, before in zip(nodes, cpu, strict=True)
    ]
    written = sum([await node.dbsize() for node in nodes]) - sum(keys)
    return len(txns) / seconds, used, written / len(txns)


async def bench_cluster(
    redis_url: str,
    cluster_url: str,
    workload: Workload,
    runs: int = 3,
    batch: int = 500,
    say: Callable[[str], None] = print,
) -> dict[str, float]:
    """Both stores, ``runs`` times each, alternately; print the report; return medians."""
    txns = workload.transactions()
    tune_for_streaming()
    probe = RedisClusterFeatureStore.from_url(cluster_url, "probe")
    await probe.client.initialize()
    primaries = [(n.host, n.port) for n in probe.client.get_primaries()]
    await probe.close()
    single_node = aioredis.Redis.from_url(redis_url)
    masters = [aioredis.Redis(host=host, port=port) for host, port in primaries]
    say(
        f"workload: {len(txns):,} transactions, {workload.cards:,} cards, "
        f"{workload.terminals} terminals, {workload.days} days; batches of {batch}; "
        f"{runs} runs; one Redis ({redis_url}) against a cluster of {len(masters)} masters "
        f"({cluster_url}); load average {os.getloadavg()[0]:.2f}"
    )
    single_tps, single_us, single_keys = [], [], []
    cluster_tps, cluster_us, cluster_keys = [], [], []
    shard_us: list[list[float]] = []
    try:
        for run in range(runs):
            prefix = f"bench-{secrets.token_hex(4)}"
            store = RedisFeatureStore.from_url(redis_url, prefix)
            try:
                tps, [us], keys = await _measure(store, [single_node], txns, batch)
            finally:
                await store.close()
            await _drop(single_node, prefix)
            single_tps.append(tps)
            single_us.append(us)
            single_keys.append(keys)
            cluster = RedisClusterFeatureStore.from_url(cluster_url, prefix)
            try:
                tps, per_master, keys = await _measure(cluster, masters, txns, batch)
            finally:
                await cluster.close()
            for node in masters:
                await _drop(node, prefix)
            cluster_tps.append(tps)
            cluster_us.append(sum(per_master))
            cluster_keys.append(keys)
            shard_us.append(per_master)
            say(
                f"run {run + 1}: one Redis {single_tps[-1]:,.0f} txn/s, {single_us[-1]:.1f} us "
                f"of Redis CPU and {single_keys[-1]:.2f} keys per transaction; cluster "
                f"{tps:,.0f} txn/s, {sum(per_master):.1f} us of Redis CPU per transaction "
                f"(per master: {', '.join(f'{u:.1f}' for u in per_master)}), {keys:.2f} keys "
                f"per transaction; load average {os.getloadavg()[0]:.2f}"
            )
    finally:
        await single_node.aclose()
        for node in masters:
            await node.aclose()
    busiest = statistics.median(max(shares) for shares in shard_us)
    total = statistics.median(cluster_us)
    result = {
        "single_txn_per_s": statistics.median(single_tps),
        "single_redis_cpu_us_per_txn": statistics.median(single_us),
        "single_keys_per_txn": statistics.median(single_keys),
        "cluster_txn_per_s": statistics.median(cluster_tps),
        "cluster_redis_cpu_us_per_txn": total,
        "cluster_busiest_master_cpu_us_per_txn": busiest,
        "cluster_keys_per_txn": statistics.median(cluster_keys),
        "single_ceiling_txn_per_s": 1e6 / statistics.median(single_us),
        "cluster_ceiling_txn_per_s": 1e6 / busiest,
    }
    say(
        f"median: one Redis {result['single_txn_per_s']:,.0f} txn/s here, "
        f"{result['single_redis_cpu_us_per_txn']:.1f} us of Redis CPU per transaction: "
        f"ceiling {result['single_ceiling_txn_per_s']:,.0f} txn/s (its main thread full). "
        f"Cluster of {len(masters)}: {result['cluster_txn_per_s']:,.0f} txn/s here "
        f"({result['cluster_txn_per_s'] / result['single_txn_per_s']:.2f} x one Redis, on "
        f"the same cores), {total:.1f} us per transaction over all masters "
        f"({total / result['single_redis_cpu_us_per_txn']:.2f} x one Redis), busiest master "
        f"{busiest:.1f} us: ceiling {result['cluster_ceiling_txn_per_s']:,.0f} txn/s; keys "
        f"per transaction {result['single_keys_per_txn']:.2f} (one Redis) and "
        f"{result['cluster_keys_per_txn']:.2f} (cluster)"
    )
    say(
        "projected on paper, masters on cores of their own and slots spread evenly: "
        + "; ".join(f"{n} masters {n * 1e6 / total:,.0f} txn/s" for n in PROJECTED)
    )
    return result


def run(
    redis_url: str, cluster_url: str, workload: Workload, runs: int, batch: int
) -> dict[str, float]:
    return asyncio.run(bench_cluster(redis_url, cluster_url, workload, runs, batch))
