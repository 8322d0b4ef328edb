"""``fraudstream bench SUITE``: benchmarks against the real servers, each with its baseline
run in the same invocation (docs/performance.md)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

from stream.cli.options import cluster_masters, positive, session
from stream.settings import Settings

if TYPE_CHECKING:
    from stream.bench.features import Workload

Runs = Annotated[int, typer.Option(callback=positive, help="runs (the median is reported)")]
Batch = Annotated[int, typer.Option(callback=positive, help="transactions per batch")]
RedisUrl = Annotated[
    str | None, typer.Option(help="benchmark this Redis (default: start the local one if needed)")
]
Customers = Annotated[int, typer.Option(callback=positive, help="simulated customers")]
Days = Annotated[float, typer.Option(callback=positive, help="days simulated")]


def register(app: typer.Typer) -> None:
    bench = typer.Typer(help="benchmarks against the real servers", no_args_is_help=True)
    for name, command, text in (
        (
            "features",
            features,
            "the feature path (state read, features, state written) on "
            "Redis, and on a Redis Cluster with --redis-cluster",
        ),
        ("simulate", simulate, "the simulator's transactions/s"),
        ("replay", replay, "the Kafka replay's events/s"),
        ("models", models, "every model of the zoo on a scenario, embedded"),
        (
            "drift",
            drift,
            "the detectors on every scenario and on steady seeds: delays, false alarms",
        ),
        ("labels", labels, "labels learned one by one against in batches, on Redis"),
        (
            "stream",
            stream,
            "Kafka in, score out, label learned: the worker's layouts against the feature path",
        ),
        ("api", api, "the API against a bare FastAPI endpoint, open loop (vegeta)"),
    ):
        bench.command(name, help=text)(command)
    app.add_typer(bench, name="bench")


def features(
    ctx: typer.Context,
    redis_url: RedisUrl = None,
    redis_cluster: Annotated[
        int | None,
        typer.Option(
            metavar="N",
            callback=cluster_masters,
            help="also run on a local Redis Cluster of N masters (started if needed) and compare",
        ),
    ] = None,
    cards: Annotated[int, typer.Option(callback=positive)] = 2000,
    terminals: Annotated[int, typer.Option(callback=positive)] = 500,
    per_day: Annotated[
        float,
        typer.Option(callback=positive, help="transactions per card per day (30 days of history)"),
    ] = 2.0,
    runs: Runs = 3,
    batch: Batch = 500,
) -> int:
    from stream.bench.features import Workload
    from stream.bench.features import run as run_bench

    settings = session(ctx).settings()
    workload = Workload(cards=cards, terminals=terminals, per_day=per_day)
    if redis_cluster is not None:
        return _on_cluster(settings, redis_url, redis_cluster, workload, runs, batch)
    return _with_redis(settings, redis_url, lambda url: run_bench(url, workload, runs, batch))


def _on_cluster(
    settings: Settings,
    redis_url: str | None,
    masters: int,
    workload: Workload,
    runs: int,
    batch: int,
) -> int:
    """One Redis against the local Redis Cluster of ``masters`` masters (started for it if it
    was not running, and stopped after)."""
    from stream.bench.cluster import run as run_cluster
    from stream.services import LocalServices

    services = LocalServices(settings.services.model_copy(update={"redis_cluster": masters}))
    nodes = services.redis_cluster.nodes
    started = [node for node in nodes if node.process().pid() is None]
    services.up(only={node.name for node in nodes})
    try:
        return _with_redis(
            settings,
            redis_url,
            lambda url: run_cluster(url, services.redis_cluster.url, workload, runs, batch),
        )
    finally:
        for node in started:
            node.process().stop()


def simulate(ctx: typer.Context, runs: Runs = 3) -> int:
    from stream.bench.data import bench_data

    return bench_data("simulate", session(ctx).settings(), runs)


def replay(ctx: typer.Context, runs: Runs = 3) -> int:
    from stream.bench.data import bench_data

    return bench_data("replay", session(ctx).settings(), runs)


def models(
    scenario: Annotated[str, typer.Option(help="the scenario to evaluate on")] = "concept_drift",
    names: Annotated[
        list[str] | None,
        typer.Option(
            "--models", metavar="MODEL", help="which (repeatable; default: the whole zoo)"
        ),
    ] = None,
    customers: Customers = 500,
) -> int:
    from models.factory import model_names
    from producers.scenario import load_scenario, run_scenario
    from stream.bench.evaluate import evaluate, table

    simulation, manifest = run_scenario(load_scenario(scenario), customers=customers)
    print(
        f"{scenario}: {simulation.transactions.height:,} transactions, "
        f"{manifest['fraud_rate']:.2%} fraud, {customers} customers; change points: "
        + (", ".join(p["at"] for p in manifest["change_points"]) or "none")
    )
    started = time.perf_counter()
    runs, freeze = evaluate(simulation, names or model_names())
    print(table(runs, freeze))
    print(
        f"({time.perf_counter() - started:.0f}s; 'after freeze day' = transactions after day "
        f"14, when the frozen baseline stopped learning)"
    )
    return 0


def drift(
    ctx: typer.Context,
    customers: Customers = 1000,
    days: Days = 56.0,
    change_day: Annotated[
        float, typer.Option(callback=positive, help="move each scenario's first change to this day")
    ] = 42.0,
    baseline_seeds: Annotated[
        int,
        typer.Option(
            callback=positive, help="seeds of the no-change scenario (each alarm is a false one)"
        ),
    ] = 10,
    max_delay_hours: Annotated[
        float,
        typer.Option(
            callback=positive, help="an alarm later than this after a change counts as false"
        ),
    ] = 72.0,
) -> int:
    from stream.bench.drift import bench_drift

    if change_day >= days:
        raise typer.BadParameter(
            f"{change_day:g} is not before the end of the scenario (--days {days:g})",
            param_hint="--change-day",
        )
    return bench_drift(
        session(ctx).settings().drift,
        baseline_seeds,
        customers,
        days,
        change_day,
        max_delay_hours * 3600,
    )


def labels(
    ctx: typer.Context, redis_url: RedisUrl = None, runs: Runs = 3, batch: Batch = 500
) -> int:
    from stream.bench.labels import bench_labels

    return _with_redis(
        session(ctx).settings(), redis_url, lambda url: bench_labels(url, runs, batch)
    )


def stream(
    ctx: typer.Context,
    scenario: Annotated[str, typer.Option(help="the scenario replayed")] = "baseline",
    customers: Customers = 1000,
    days: Days = 14.0,
    rate: Annotated[
        float,
        typer.Option(callback=positive, help="transactions/s offered for the latency measurement"),
    ] = 5000.0,
    seconds: Annotated[
        float, typer.Option(callback=positive, help="how long that rate is offered")
    ] = 20.0,
    runs: Runs = 3,
) -> int:
    """Start the local Kafka and Redis if needed, then compare the layouts."""
    from stream.bench.stream import bench_stream

    return _with_kafka_and_redis(
        session(ctx).settings(),
        lambda ready: bench_stream(ready, scenario, customers, days, rate, seconds, runs),
    )


def api(
    ctx: typer.Context,
    customers: Customers = 1000,
    days: Days = 14.0,
    seconds: Annotated[
        float, typer.Option(callback=positive, help="how long each attack lasts")
    ] = 8.0,
    workers: Annotated[
        int,
        typer.Option(
            callback=positive, help="also attack `fraudstream api --workers N` at 1,000/s"
        ),
    ] = 1,
    runs: Annotated[
        int,
        typer.Option(callback=positive, help="runs of the whole bench (medians reported)"),
    ] = 1,
) -> int:
    """Start the local Kafka (the decision log) and Redis if needed, then attack the API."""
    from stream.bench.api import bench_api
    from stream.bench.api_medians import report

    def bench(ready: Settings) -> None:
        summaries = []
        for run in range(runs):
            if runs > 1:
                print(f"run {run + 1} of {runs}")
            summaries.append(bench_api(ready, customers, days, seconds, workers))
        if runs > 1:
            report(summaries)

    return _with_kafka_and_redis(session(ctx).settings(), bench)


def _with_kafka_and_redis(settings: Settings, bench: Callable[[Settings], object]) -> int:
    """Run ``bench`` on the local Kafka and Redis, started for it if they were not running
    (and stopped after)."""
    from stream.services import LocalServices

    services = LocalServices(settings.services)
    # stopped after: only what was not answering before (one running, even if another
    # process started it, is someone's: a bench once stopped a session's servers)
    ours = [s.name for s in services.status() if not s.answering and s.name in ("kafka", "redis")]
    services.up(only={"kafka", "redis"})
    settings = settings.model_copy(
        update={
            "kafka": settings.kafka.model_copy(
                update={"bootstrap_servers": services.kafka.address}
            ),
            "redis": settings.redis.model_copy(update={"url": services.redis.url}),
        }
    )
    try:
        bench(settings)
    finally:
        for name in ours:
            getattr(services, name).process().stop()
    return 0


def _with_redis(settings: Settings, redis_url: str | None, bench: Callable[[str], object]) -> int:
    """Run ``bench`` on ``redis_url``, or on the local Redis (started if needed)."""
    from stream.services import LocalServices

    if redis_url is not None:
        bench(redis_url)
        return 0
    services = LocalServices(settings.services)
    started = not services.redis.ready()
    services.up(only={"redis"})
    try:
        bench(services.redis.url)
    finally:
        if started:
            services.redis.process().stop()
    return 0
