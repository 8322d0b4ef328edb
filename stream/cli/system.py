"""Running the system: ``services``, ``worker``, ``api``, ``drift-refresh``, ``dashboards``
and ``migrate-keys``."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from stream.cli.options import cluster_masters, positive, session
from stream.settings import Settings, to_env

if TYPE_CHECKING:
    from stream.services import LocalServices

RedisCluster = Annotated[
    int | None,
    typer.Option(
        "--redis-cluster",
        metavar="N",
        callback=cluster_masters,
        help=(
            "also a local Redis Cluster of N masters (3 to 16) on ports from "
            "services.redis_cluster_port (7000)"
        ),
    ),
]


class Role(StrEnum):
    all = "all"
    score = "score"
    learn = "learn"
    monitor = "monitor"


def register(app: typer.Typer) -> None:
    services = typer.Typer(
        help="real Kafka, Redis, Prometheus, Alertmanager as local processes", no_args_is_help=True
    )
    services.command("install", help="fetch every program and jar the services need")(install)
    services.command("up", help="start what is not running; print the endpoints")(up)
    services.command("down", help="stop every service")(down)
    services.command("status", help="what runs and answers (exit 3 if not all)")(status)
    app.add_typer(services, name="services")
    app.command(
        "worker",
        help=(
            "run the Faust stream worker: its roles (default all: scoring, "
            "learning and drift monitoring in one process)"
        ),
    )(worker)
    app.command("api", help="run the scoring API")(api)
    app.command(
        "drift-refresh", help="make the workers take the recent traffic as the new drift reference"
    )(drift_refresh)
    app.command("dashboards", help="regenerate dashboards/*.json from the code")(dashboards)
    app.command(
        "migrate-keys",
        help="rename a Redis written before the hash-tagged key layout (stop every process first)",
    )(migrate_keys)


def _services(ctx: typer.Context, redis_cluster: int | None) -> LocalServices:
    from stream.services import LocalServices

    settings = session(ctx).settings()
    if redis_cluster is not None:
        settings = settings.model_copy(
            update={
                "services": settings.services.model_copy(update={"redis_cluster": redis_cluster})
            }
        )
    return LocalServices(settings.services)


def install(ctx: typer.Context, redis_cluster: RedisCluster = None) -> int:
    services = _services(ctx, redis_cluster)
    services.install()
    print("every program and jar the services need is installed")
    return 0


def up(ctx: typer.Context, redis_cluster: RedisCluster = None) -> int:
    services = _services(ctx, redis_cluster)
    started = time.monotonic()
    statuses = services.up()
    for line in statuses:
        print(line.line())
    print(f"ready in {time.monotonic() - started:.1f}s; clients use:")
    for name, value in services.endpoints().items():
        print(f"  {name}={value}")
    return 0 if all(s.answering for s in statuses) else 1


def down(ctx: typer.Context, redis_cluster: RedisCluster = None) -> int:
    services = _services(ctx, redis_cluster)
    stopped = services.down()
    print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    return 0


def status(ctx: typer.Context, redis_cluster: RedisCluster = None) -> int:
    services = _services(ctx, redis_cluster)
    statuses = services.status()
    for line in statuses:
        print(line.line())
    return 0 if all(s.answering for s in statuses) else 3


def worker(
    ctx: typer.Context,
    role: Annotated[
        list[Role] | None,
        typer.Option(
            metavar="ROLE",
            help=(
                "all (default), score (any number of instances), learn or "
                "monitor (one active each, the others stand by); repeatable"
            ),
        ),
    ] = None,
) -> int:
    from stream.runtime.roles import parse_roles
    from stream.runtime.worker import run_worker

    run_worker(
        session(ctx).settings(), parse_roles(r.value for r in role or []), session(ctx).log_level
    )
    return 0


def api(
    ctx: typer.Context,
    workers: Annotated[
        int | None,
        typer.Option(
            callback=positive,
            help=(
                "processes serving the port (default api.workers, 1); see "
                "docs/performance.md for sizing"
            ),
        ),
    ] = None,
) -> int:
    """Serve the API: one process, or ``workers`` (``api.workers``) processes on one port,
    each its own app (:func:`stream.wiring.build_api`), their metrics read together."""
    settings, log_level = session(ctx).settings(), session(ctx).log_level
    _port_free(settings.api.host, settings.api.port)
    import uvicorn

    from stream.wiring import api_metrics_dir, build_api, serving

    workers = workers or settings.api.workers
    if crowded := more_workers_than_cores(workers, len(os.sched_getaffinity(0))):
        print(f"fraudstream api: warning: {crowded}", file=sys.stderr)
    if workers == 1:
        uvicorn.run(serving(build_api(settings)), **server_options(settings, log_level))
        return 0
    os.environ.update(to_env(settings))  # each worker process reads the same settings
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(api_metrics_dir(settings, fresh=True))
    uvicorn.run(
        "stream.wiring:api_from_env",
        factory=True,
        workers=workers,
        **server_options(settings, log_level),
    )
    return 0


def more_workers_than_cores(workers: int, cores: int) -> str:
    """Why ``workers`` API processes are too many for ``cores`` ("" if they are not).

    Each process runs one event loop on one core. With more processes than cores, each
    waits for a core, its loop runs late, and it sheds load it could serve: 3 processes on
    2 cores refused 355 of 8,000 requests at 1,000/s (p99 83 ms); 2 processes refused none
    in 5 of 6 runs.

    Parameters
    ----------
    workers
        API processes asked for.
    cores
        Cores this process may run on.

    Examples
    --------
    >>> more_workers_than_cores(2, 2)
    ''
    >>> more_workers_than_cores(3, 2)
    '3 processes on 2 cores: each waits for a core, and sheds load it could serve (use at most 2)'
    """
    if workers <= cores:
        return ""
    return (
        f"{workers} processes on {cores} cores: each waits for a core, and sheds load it "
        f"could serve (use at most {cores})"
    )


def server_options(settings: Settings, log_level: str) -> dict[str, Any]:
    """uvicorn's options for the API of ``settings``: where it listens, its logs, how long
    idle connections are kept, its HTTP protocol, which refuses what the process cannot
    take as soon as the headers are read (:mod:`stream.serving.protocol`), and its event
    loop: asyncio's own, not uvloop. Past its CPU, a process on uvloop took in the new
    connections of a burst slowly: at 5,000 requests/s the first requests on them waited
    120-360 ms (503 p99 of the attack 124-194 ms); on asyncio's loop, 503 p99 4.3-8.4 ms,
    with the same throughput and the same latency at 1,000/s (docs/performance.md).

    Parameters
    ----------
    settings
        The settings the API serves by (``api``).
    log_level
        uvicorn's log level (``info``, ``warning``, ...).
    """
    api = settings.api
    return {
        "host": api.host,
        "port": api.port,
        "log_level": log_level,
        "access_log": api.access_log,
        "timeout_keep_alive": api.keep_alive_seconds,
        "http": "stream.serving.protocol:AdmittingHttp",
        "loop": "asyncio",
    }


def _port_free(host: str, port: int) -> None:
    """Refuse to start on a taken port: uvicorn logged ``address already in use`` and then
    hung in its shutdown, ignoring SIGTERM."""
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise RuntimeError(
                f"api.port: {host}:{port} is not free ({exc.strerror}); set "
                "FRAUDSTREAM_API__PORT to another port"
            ) from exc


def drift_refresh(ctx: typer.Context) -> int:
    return asyncio.run(_drift_refresh(session(ctx).settings()))


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


def dashboards(
    check: Annotated[
        bool,
        typer.Option("--check", help="only check that the JSON matches the code (exit 1 if not)"),
    ] = False,
) -> int:
    from monitoring.grafana import generate

    folder = Path(__file__).resolve().parents[2] / "dashboards"
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


def migrate_keys(
    ctx: typer.Context,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="count what would be renamed, change nothing")
    ] = False,
) -> int:
    from stream.migrate import migrate
    from stream.wiring import sync_client

    settings = session(ctx).settings()
    if settings.redis.cluster:
        print(
            "fraudstream: migrate-keys: a Redis Cluster never held the old key layout",
            file=sys.stderr,
        )
        return 2
    counts = migrate(sync_client(settings), settings.redis.key_prefix, dry_run)
    for what, count in sorted(counts.items()):
        print(f"{what}: {count:,}")
    print("nothing to migrate" if not counts else "dry run: nothing changed" if dry_run else "done")
    return 0
