"""The scoring API's own cost per request, without HTTP: the app against the bare one.

``fraudstream bench api`` measures the whole path (vegeta, uvicorn, the app,
Redis) at constant rates; on a shared 2-core machine its ratios move with
whatever else runs. This drives both ASGI apps directly, in one process, on
the same prepared Redis: the API as ``fraudstream api`` builds it (guard,
decision log off: it needs Kafka) and the bench's bare endpoint (a pydantic
body and one Redis GET). Requests go ``--concurrency`` at a time; each app
gets alternating rounds, and the medians per request and their ratio are
printed with the load average. Profile it with
``py-spy record -o api.txt --format raw -- python -m tests.benchmarks.api_app``.

Run: ``python -m tests.benchmarks.api_app [--requests N] [--rounds R]``
(local Redis from ``FRAUDSTREAM_REDIS__URL``; ``make services-up`` starts one).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import time
from collections.abc import Sequence
from typing import Any

from producers.schema import TransactionRecord, encode


async def _call(app: Any, path: str, body: bytes) -> int:
    """One POST through ``app``'s ASGI interface; its status."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"bench"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    sent = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.sleep(3600)
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def _drive(app: Any, bodies: Sequence[bytes], concurrency: int) -> tuple[float, float]:
    """Send every body, ``concurrency`` at a time; (wall, CPU) seconds per request."""
    statuses: list[int] = []
    queue = list(reversed(bodies))

    async def client() -> None:
        while queue:
            statuses.append(await _call(app, "/v1/score", queue.pop()))

    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    bad = [s for s in statuses if s != 200]
    if bad:
        raise RuntimeError(f"{len(bad)} answers were not 200 (first: {bad[0]})")
    return wall / len(bodies), cpu / len(bodies)


async def _lifespan(app: Any) -> tuple[asyncio.Task[None], asyncio.Queue[dict[str, Any]]]:
    """Start ``app``'s lifespan (its refresher); the task and its queue, to stop it."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    started = asyncio.Event()

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "lifespan.startup.complete":
            started.set()

    scope = {"type": "lifespan", "asgi": {"version": "3.0"}}
    task = asyncio.create_task(app(scope, inbox.get, send))
    await inbox.put({"type": "lifespan.startup"})
    await asyncio.wait_for(started.wait(), 30)
    return task, inbox


async def main(requests: int, rounds: int, concurrency: int, customers: int, days: float) -> None:
    from pydantic import SecretStr

    from stream.bench.api import _prepare, bare_app
    from stream.bench.stream import remove_run
    from stream.runtime.gc_settings import tune_for_streaming
    from stream.settings import Settings
    from stream.wiring import build_api

    prefix = f"benchapp{secrets.token_hex(3)}"
    settings = Settings.model_validate(
        {
            "redis": {"key_prefix": prefix},
            "model": {"signing_key": SecretStr(secrets.token_hex(16))},
            "api": {"decision_log": False, "max_loop_lag_ms": 0},
        }
    )
    os.environ["FRAUDSTREAM_REDIS__URL"] = settings.redis.url
    try:
        txns = await _prepare(settings, customers, days)
        bodies = [encode(TransactionRecord.from_event(t)) for t in txns][:requests]
        api, bare = build_api(settings), bare_app()
        api_life = await _lifespan(api)
        tune_for_streaming()
        results: dict[str, list[tuple[float, float]]] = {"api": [], "bare": []}
        for app in (api, bare):  # warm both
            await _drive(app, bodies[:500], concurrency)
        for _ in range(rounds):
            for name, app in (("api", api), ("bare", bare)):
                results[name].append(await _drive(app, bodies, concurrency))
        api_life[1].put_nowait({"type": "lifespan.shutdown"})
        await asyncio.wait_for(api_life[0], 10)
    finally:
        remove_run(settings)
    print(f"{len(bodies)} requests x {rounds} rounds, {concurrency} at a time")
    med = {}
    for name, runs in results.items():
        wall = statistics.median(w for w, _ in runs) * 1e6
        cpu = statistics.median(c for _, c in runs) * 1e6
        med[name] = cpu
        print(f"{name:5s} wall {wall:7.1f} us/request, CPU {cpu:7.1f} us/request")
    print(f"api / bare CPU per request: {med['api'] / med['bare']:.2f} x")
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--days", type=float, default=14.0)
    a = parser.parse_args()
    asyncio.run(main(a.requests, a.rounds, a.concurrency, a.customers, a.days))
