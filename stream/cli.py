"""``fraudstream``: the one command line, and the only place that wires everything.

Subcommands: ``services up|down|status``, ``worker``, ``api``,
``demo``, ``scenarios list|describe``, ``simulate-data``, ``replay``,
``models list|promote|rollback``, ``bench features|simulate|replay|models|drift|labels``.
Settings are read once here and passed down.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from models.errors import ModelError
from stream.settings import Settings, load_settings, to_env

if TYPE_CHECKING:
    from stream.bench import Workload


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value} must be greater than 0")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{value} must be greater than 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fraudstream", description=__doc__)
    parser.add_argument("--log-level", default="info",
                        choices=["debug", "info", "warning", "error"])
    sub = parser.add_subparsers(dest="command", required=True)

    services = sub.add_parser("services", help="real Kafka, Redis, Prometheus, Alertmanager")
    services.add_argument("action", choices=["install", "up", "down", "status"])
    services.add_argument("--redis-cluster", type=_cluster_masters, metavar="N", default=None,
                          help="also a local Redis Cluster of N masters (at least 3) on "
                               "ports from services.redis_cluster_port (7000)")

    worker = sub.add_parser("worker", help="run the Faust stream worker: its roles (default "
                            "all: scoring, learning and drift monitoring in one process)")
    worker.add_argument("--role", action="append", default=[], metavar="ROLE",
                        choices=["all", "score", "learn", "monitor"],
                        help="all (default), score (any number of instances), learn or "
                             "monitor (one active each, the others stand by); repeatable")
    api = sub.add_parser("api", help="run the scoring API")
    api.add_argument("--workers", type=positive_int, default=None,
                     help="processes serving the port (default api.workers, 1); see "
                          "docs/performance.md for sizing")

    from stream import datacmd

    datacmd.add_arguments(sub)
    datacmd.add_report_arguments(sub)

    from stream import scorecardcmd

    scorecardcmd.add_arguments(sub)

    sub.add_parser("drift-refresh",
                   help="make the workers take the recent traffic as the new drift reference")

    dashboards = sub.add_parser("dashboards", help="regenerate dashboards/*.json from the code")
    dashboards.add_argument("--check", action="store_true",
                            help="only check that the JSON matches the code (exit 1 if not)")

    migrate = sub.add_parser("migrate-keys", help="rename a Redis written before the "
                             "hash-tagged key layout (stop every process first)")
    migrate.add_argument("--dry-run", action="store_true",
                         help="count what would be renamed, change nothing")

    models = sub.add_parser("models", help="model versions: list, promote, roll back")
    models.add_argument("action", choices=["list", "promote", "rollback"])
    models.add_argument("version", nargs="?", type=positive_int,
                        help="promote: the version; rollback: optional target")
    models.add_argument("--who", default=None, help="who asks (default: $USER)")
    models.add_argument("--reason", default=None, help="why (required to change anything)")
    models.add_argument("--challenger", default=None,
                        help="promote: make this challenger's current model the champion")

    bench = sub.add_parser("bench", help="benchmarks against the real servers")
    bench.add_argument("suite", choices=["features", "simulate", "replay", "models", "drift",
                                         "labels", "stream", "api"])
    bench.add_argument("--scenario", default=None,
                       help="models: the scenario to evaluate on (default concept_drift); "
                            "stream: the scenario replayed (default baseline)")
    bench.add_argument("--models", nargs="+", default=None,
                       help="models: which (default: the whole zoo)")
    bench.add_argument("--redis-url", default=None,
                       help="benchmark this Redis (default: start the local one if needed)")
    bench.add_argument("--redis-cluster", type=positive_int, default=None, metavar="N",
                       help="features: also run on a local Redis Cluster of N masters "
                            "(started if needed; N >= 3) and compare")
    bench.add_argument("--cards", type=positive_int, default=2000)
    bench.add_argument("--terminals", type=positive_int, default=500)
    bench.add_argument("--per-day", type=positive_float, default=2.0,
                       help="transactions per card per day (30 days of history)")
    bench.add_argument("--runs", type=positive_int, default=3)
    bench.add_argument("--customers", type=positive_int, default=1000,
                       help="drift: simulated customers")
    bench.add_argument("--days", type=positive_float, default=None,
                       help="drift: days simulated per scenario (default 56); stream: days "
                            "replayed (default 14)")
    bench.add_argument("--change-day", type=positive_float, default=42.0,
                       help="drift: move each scenario's first change to this day")
    bench.add_argument("--baseline-seeds", type=positive_int, default=10,
                       help="drift: seeds of the no-change scenario (each alarm is a false one)")
    bench.add_argument("--max-delay-hours", type=positive_float, default=72.0,
                       help="drift: an alarm later than this after a change counts as false")
    bench.add_argument("--batch", type=positive_int, default=500)
    bench.add_argument("--rate", type=positive_float, default=5000.0,
                       help="stream: transactions/s offered for the latency measurement")
    bench.add_argument("--seconds", type=positive_float, default=None,
                       help="stream: how long that rate is offered (default 20); api: how "
                            "long each attack lasts (default 8)")
    bench.add_argument("--workers", type=positive_int, default=1,
                       help="api: also attack `fraudstream api --workers N` at 1,000/s")

    demo = sub.add_parser("demo", help="services + worker + API + a drift scenario replayed; "
                          "Ctrl-C stops all")
    demo.add_argument("--scenario", default="sudden_covariate_shift",
                      help="built-in scenario name or YAML file (see `scenarios list`)")
    demo.add_argument("--speed", type=positive_float, default=20_000.0,
                      help="replay N times faster than the scenario's clock (20000: a day in "
                           "about 4 s)")
    demo.add_argument("--customers", type=positive_int, default=500)
    demo.add_argument("--seed", type=int, default=None)
    demo.add_argument("--change-day", type=positive_float, default=40.0,
                      help="move the scenario's first change to this day (the detectors start "
                           "once the feature state is drift.state_maturity_days old, 30 by "
                           "default); the run lasts as long after it as the scenario did")
    demo.add_argument("--duration", type=positive_float, default=None,
                      help="stop by itself after this many seconds (default: until Ctrl-C)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("kafka", "aiokafka"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    try:
        settings = load_settings()
    except Exception as exc:  # pydantic names the field and the reason
        print(f"fraudstream: invalid settings: {exc}", file=sys.stderr)
        return 2
    try:
        return _run(args, settings)
    except KeyboardInterrupt:
        return 130
    except (RuntimeError, ValueError, ModelError) as exc:
        print(f"fraudstream: {exc}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "services":
        return _services(args.action, settings, args.redis_cluster)
    if args.command == "worker":
        from stream.runtime.roles import parse_roles
        from stream.runtime.worker import run_worker

        run_worker(settings, parse_roles(args.role), args.log_level)
        return 0
    if args.command == "api":
        return _api(settings, args.log_level, args.workers)
    if args.command == "bench":
        return _bench(args, settings)
    if args.command == "models":
        return asyncio.run(_models(args, settings))
    if args.command == "dashboards":
        return _dashboards(args.check)
    if args.command == "drift-refresh":
        return asyncio.run(_drift_refresh(settings))
    if args.command == "migrate-keys":
        return _migrate_keys(settings, args.dry_run)
    if args.command == "scorecard":
        from stream import scorecardcmd

        return scorecardcmd.run(args, settings)
    if args.command in ("scenarios", "simulate-data", "replay", "drift-report"):
        return _data(args, settings)
    from stream.demo import run_demo

    return run_demo(settings, args)


def _migrate_keys(settings: Settings, dry_run: bool) -> int:
    from stream.migrate import migrate
    from stream.wiring import sync_client

    if settings.redis.cluster:
        print("fraudstream: migrate-keys: a Redis Cluster never held the old key layout",
              file=sys.stderr)
        return 2
    counts = migrate(sync_client(settings), settings.redis.key_prefix, dry_run)
    for what, count in sorted(counts.items()):
        print(f"{what}: {count:,}")
    print("nothing to migrate" if not counts else "dry run: nothing changed" if dry_run
          else "done")
    return 0


async def _drift_refresh(settings: Settings) -> int:
    from datetime import UTC, datetime

    from stream.runtime.monitor import drift_refresh_key
    from stream.wiring import build_store

    store = build_store(settings)
    try:
        await store.client.set(drift_refresh_key(settings), datetime.now(tz=UTC).isoformat())
    finally:
        await store.close()
    print("asked the workers to refresh their drift references (within snapshot_every_seconds)")
    return 0


def _dashboards(check: bool) -> int:
    from pathlib import Path

    from monitoring.grafana import generate

    folder = Path(__file__).resolve().parent.parent / "dashboards"
    stale = []
    for path, text in generate(folder).items():
        if path.is_file() and path.read_text() == text:
            continue
        stale.append(path.name)
        if not check:
            path.write_text(text)
    if check and stale:
        print(f"fraudstream: out of date: {', '.join(stale)}", file=sys.stderr)
        return 1
    print(f"{'checked' if check else 'wrote'} dashboards; changed: {', '.join(stale) or 'none'}")
    return 0


async def _models(args: argparse.Namespace, settings: Settings) -> int:
    import getpass
    from datetime import UTC, datetime

    from stream.wiring import build_registry, build_store

    store = build_store(settings)
    registry = build_registry(settings, store)
    try:
        if args.action == "list":
            champion = await registry.champion_version()
            for meta in await registry.versions():
                mark = "*" if meta.version == champion else " "
                quality = meta.metrics or {}
                print(f"{mark} v{meta.version:<5} parent {meta.parent!s:<5} {meta.model_name:32s}"
                      f" labels {meta.labels_learned:>8,}  feature set v{meta.feature_set_version}"
                      f"  AP {quality.get('average_precision_window', float('nan')):.3f}"
                      f"  ROC AUC {quality.get('roc_auc_window', float('nan')):.3f}")
            for entry in await registry.audit():
                print(f"  {entry.at} {entry.action} v{entry.from_version} -> v{entry.to_version}"
                      f" by {entry.who}: {entry.why}")
            return 0
        if not args.reason:
            print("fraudstream: --reason is required to change the champion", file=sys.stderr)
            return 2
        who = args.who or getpass.getuser()
        at = datetime.now(tz=UTC).isoformat()
        if args.action == "promote" and args.challenger:
            entry = await registry.adopt(registry.challenger(args.challenger), who, args.reason,
                                         at)
        elif args.action == "promote":
            if args.version is None:
                print("fraudstream: models promote needs a VERSION or --challenger NAME",
                      file=sys.stderr)
                return 2
            entry = await registry.promote(args.version, who, args.reason, at)
        else:
            entry = await registry.rollback(who, args.reason, at, args.version)
        print(f"{entry.action}: v{entry.from_version} -> v{entry.to_version} "
              f"(by {entry.who}; the worker and API follow within seconds)")
        return 0
    finally:
        await store.close()


def _data(args: argparse.Namespace, settings: Settings) -> int:
    from stream import datacmd

    try:
        if args.command == "scenarios":
            return datacmd.scenarios(args)
        if args.command == "simulate-data":
            return datacmd.simulate_data(args)
        if args.command == "drift-report":
            return datacmd.drift_report(args)
        return datacmd.replay(args, settings)
    except datacmd.ERRORS as exc:
        print(f"fraudstream: {exc}", file=sys.stderr)
        return 2


def _bench(args: argparse.Namespace, settings: Settings) -> int:
    from stream.bench import Workload
    from stream.bench import run as run_bench

    if args.suite == "models":
        return _bench_models(args)
    if args.suite == "stream":
        return _bench_stream(args, settings)
    if args.suite == "api":
        return _bench_api(args, settings)
    if args.suite == "drift":
        from stream.bench_detection import bench_drift

        args.days = args.days or 56.0
        if args.change_day >= args.days:
            raise SystemExit(f"fraudstream: --change-day: {args.change_day:g} is not before "
                             f"the end of the scenario (--days {args.days:g})")
        return bench_drift(settings.drift.detector_config(), args.baseline_seeds,
                           args.customers, args.days, args.change_day,
                           args.max_delay_hours * 3600)
    if args.suite in ("simulate", "replay"):
        from stream.bench_data import bench_data

        return bench_data(args.suite, settings, args.runs)

    if args.suite == "labels":
        from stream.bench_labels import bench_labels

        return _with_redis(args, settings, lambda url: bench_labels(url, args.runs, args.batch))
    workload = Workload(cards=args.cards, terminals=args.terminals, per_day=args.per_day)
    if args.redis_cluster is not None:
        return _bench_cluster(args, settings, workload)
    return _with_redis(args, settings, lambda url: run_bench(url, workload, args.runs, args.batch))


def _bench_cluster(args: argparse.Namespace, settings: Settings, workload: Workload) -> int:
    """One Redis against the local Redis Cluster of ``--redis-cluster`` masters (started
    for it if it was not running, and stopped after)."""
    from stream.bench_cluster import run as run_cluster
    from stream.services import LocalServices

    if args.redis_cluster < 3:
        raise SystemExit(f"fraudstream: --redis-cluster: {args.redis_cluster} masters; a Redis "
                         "Cluster needs at least 3")
    services = LocalServices(settings.services.model_copy(
        update={"redis_cluster": args.redis_cluster}))
    nodes = services.redis_cluster.nodes
    started = [node for node in nodes if node.process().pid() is None]
    services.up(only={node.name for node in nodes})
    try:
        return _with_redis(args, settings, lambda url: run_cluster(
            url, services.redis_cluster.url, workload, args.runs, args.batch))
    finally:
        for node in started:
            node.process().stop()


def _bench_stream(args: argparse.Namespace, settings: Settings) -> int:
    """Start the local Kafka and Redis if needed, then compare the layouts."""
    from stream.bench_stream import bench_stream

    return _with_kafka_and_redis(settings, lambda ready: bench_stream(
        ready, args.scenario or "baseline", args.customers, args.days or 14.0, args.rate,
        args.seconds or 20.0, args.runs))


def _bench_api(args: argparse.Namespace, settings: Settings) -> int:
    """Start the local Kafka (the decision log) and Redis if needed, then attack the API."""
    from stream.bench_api import bench_api

    return _with_kafka_and_redis(settings, lambda ready: bench_api(
        ready, args.customers, args.days or 14.0, args.seconds or 8.0, args.workers))


def _with_kafka_and_redis(settings: Settings, bench: Callable[[Settings], object]) -> int:
    """Run ``bench`` on the local Kafka and Redis, started for it if they were not running
    (and stopped after)."""
    from stream.services import LocalServices

    services = LocalServices(settings.services)
    ours = [s.name for s in services.status() if s.pid is None and s.name in ("kafka", "redis")]
    services.up(only={"kafka", "redis"})
    settings = settings.model_copy(update={
        "kafka": settings.kafka.model_copy(update={"bootstrap_servers": services.kafka.address}),
        "redis": settings.redis.model_copy(update={"url": services.redis.url})})
    try:
        bench(settings)
    finally:
        for name in ours:
            getattr(services, name).process().stop()
    return 0


def _with_redis(args: argparse.Namespace, settings: Settings,
                bench: Callable[[str], object]) -> int:
    """Run ``bench`` on ``--redis-url``, or on the local Redis (started if needed)."""
    from stream.services import LocalServices

    if args.redis_url is not None:
        bench(args.redis_url)
        return 0
    services = LocalServices(settings.services)
    started = services.redis.process().pid() is None
    services.up(only={"redis"})
    try:
        bench(services.redis.url)
    finally:
        if started:
            services.redis.process().stop()
    return 0


def _bench_models(args: argparse.Namespace) -> int:
    from models.factory import model_names
    from producers.scenario import load_scenario, run_scenario
    from stream.evaluate import evaluate, table

    customers = args.cards if args.cards != 2000 else 500
    scenario = args.scenario or "concept_drift"
    simulation, manifest = run_scenario(load_scenario(scenario), customers=customers)
    print(f"{scenario}: {simulation.transactions.height:,} transactions, "
          f"{manifest['fraud_rate']:.2%} fraud, {customers} customers; change points: "
          + (", ".join(p["at"] for p in manifest["change_points"]) or "none"))
    started = time.perf_counter()
    runs, freeze = evaluate(simulation, args.models or model_names())
    print(table(runs, freeze))
    print(f"({time.perf_counter() - started:.0f}s; 'after freeze day' = transactions after day "
          f"14, when the frozen baseline stopped learning)")
    return 0


def _cluster_masters(text: str) -> int:
    """``--redis-cluster``: a number of masters, at least 3.

    >>> _cluster_masters("3")
    3
    >>> _cluster_masters("2")
    Traceback (most recent call last):
    argparse.ArgumentTypeError: 2: a Redis Cluster here has 3 to 16 masters
    """
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of masters") from None
    if not 3 <= count <= 16:
        raise argparse.ArgumentTypeError(f"{count}: a Redis Cluster here has 3 to 16 masters")
    return count


def _services(action: str, settings: Settings, redis_cluster: int | None = None) -> int:
    from stream.services import LocalServices

    if redis_cluster is not None:
        settings = settings.model_copy(update={"services": settings.services.model_copy(
            update={"redis_cluster": redis_cluster})})
    services = LocalServices(settings.services)
    if action == "install":
        services.install()
        print("every program and jar the services need is installed")
        return 0
    if action == "up":
        started = time.monotonic()
        statuses = services.up()
        for status in statuses:
            print(status.line())
        print(f"ready in {time.monotonic() - started:.1f}s; clients use:")
        for name, value in services.endpoints().items():
            print(f"  {name}={value}")
        return 0 if all(s.answering for s in statuses) else 1
    if action == "down":
        stopped = services.down()
        print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
        return 0
    statuses = services.status()
    for status in statuses:
        print(status.line())
    return 0 if all(s.answering for s in statuses) else 3


def _port_free(host: str, port: int) -> None:
    """Refuse to start on a taken port: uvicorn logged ``address already in use`` and then
    hung in its shutdown, ignoring SIGTERM."""
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise RuntimeError(f"api.port: {host}:{port} is not free ({exc.strerror}); set "
                               "FRAUDSTREAM_API__PORT to another port") from exc


def _api(settings: Settings, log_level: str, workers: int | None = None) -> int:
    """Serve the API: one process, or ``workers`` (``api.workers``) processes on one port,
    each its own app (:func:`stream.wiring.build_api`), their metrics read together."""
    _port_free(settings.api.host, settings.api.port)
    import uvicorn

    from stream.wiring import api_metrics_dir, build_api, serving

    workers = workers or settings.api.workers
    if workers == 1:
        uvicorn.run(serving(build_api(settings)), host=settings.api.host, port=settings.api.port,
                    log_level=log_level, access_log=settings.api.access_log)
        return 0
    os.environ.update(to_env(settings))  # each worker process reads the same settings
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(api_metrics_dir(settings, fresh=True))
    uvicorn.run("stream.wiring:api_from_env", factory=True, workers=workers,
                host=settings.api.host, port=settings.api.port, log_level=log_level,
                access_log=settings.api.access_log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
