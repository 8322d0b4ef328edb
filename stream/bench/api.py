"""``fraudstream bench api``: the scoring API under open-loop, constant-rate load, against a
bare FastAPI endpoint in the same invocation.

A simulated stream is scored into the local Redis (its own keys, removed
after) and its labels are learned, so the API serves a trained champion from
real feature state. The load generator is vegeta (``go install
github.com/tsenart/vegeta/v12@v12.13.0``; installed into ``.cache/go/bin``
when missing): it sends each request on schedule whatever the answers
(open loop: queueing shows as latency, never as a lower offered rate), from
its own process, to 10,000 different real cards.

At each rate of a ladder the API (one process, as ``fraudstream api`` runs
it, decision log included) and the **baseline** (``bare_app``: a pydantic
body and one Redis GET, one uvicorn process) get the same attack. Reported
per attack: p50, p95, p99 and max latency, the status counts, and the
generator's own CPU time. Then: the API at three times its sustainable rate
(load shedding: 503 answered at once, accepted requests' latency kept);
``POST /v1/score/batch`` of 100 transactions; ``?explain=true`` against the
plain answer at the same rate; and, with ``--workers N``, the API as
documented for production at 1,000 requests/s.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from features.events import Transaction
from producers.schema import TransactionRecord
from stream.bench.stream import remove_run
from stream.bench.vegeta import SUSTAINED_P99_MS, Attack, attack, vegeta
from stream.services.process import free_port
from stream.settings import Settings, to_env

#: Rates tried for one process, requests/s.
LADDER = (250, 500, 750, 1000, 1250, 1500, 1750, 2000, 2500, 3000, 4000)
#: The overload attack's highest rate. Against an API whose answers were slow vegeta took
#: 1.8 of 2 cores at 4,500/s; against 503s answered at once, 0.44 of a core at 6,000/s.
OVERLOAD_MAX = 6000.0
#: A batch rate is sustained when every answer is 200 and p99 is at most this (ms).
BATCH_P99_MS = 100.0
#: Distinct cards the requests cycle through.
CARDS = 10_000
#: The overload attack's steady state: from this many seconds in (the process starts
#: shedding only once its event loop has been late for 100 ms; what queued meanwhile is
#: answered late).
STEADY_AFTER_S = 1.0


def bare_app() -> Any:
    """The baseline: a FastAPI endpoint with a pydantic body and one Redis GET (the card's
    key), nothing else (a uvicorn factory; Redis from ``FRAUDSTREAM_REDIS__URL``)."""
    import redis.asyncio as aioredis
    from fastapi import FastAPI

    client = aioredis.Redis.from_url(
        os.environ.get("FRAUDSTREAM_REDIS__URL", "redis://127.0.0.1:6379/0")
    )
    app = FastAPI()

    @app.post("/v1/score")
    async def score(body: TransactionRecord) -> dict[str, object]:
        state = await client.get(f"bench-bare:{body.card_id}")
        return {"txn_id": body.txn_id, "score": 0.0 if state is None else 1.0}

    @app.get("/readyz")
    async def ready() -> dict[str, str]:
        return {"status": "ready"}

    return app


async def _prepare(settings: Settings, customers: int, days: float) -> list[Transaction]:
    """Score a simulated stream into Redis, learn its labels, publish the champion; the
    transactions to send: one per card, an hour after the stream, in turn."""
    from features.redis_store import RedisFeatureStore
    from models.learner import Learner
    from models.scoring import ModelHolder, ServingModel, score_batch
    from stream.bench.labels import stream_events
    from stream.wiring import build_registry

    txns, labels = stream_events(customers, days)
    store = RedisFeatureStore.from_url(settings.redis.url, settings.redis.key_prefix)
    try:
        registry = build_registry(settings, store)
        learner = await Learner.start(registry, store, settings.model.name, 10_000)
        holder = ModelHolder()
        holder.swap(ServingModel(learner.meta.version, learner.model))
        for start in range(0, len(txns), 500):
            await score_batch(store, holder, list(txns[start : start + 500]))
        for start in range(0, len(labels), 1000):
            await learner.learn_many(labels[start : start + 1000])
        await learner.publish()
    finally:
        await store.close()
    end = max(t.event_time for t in txns) + 3600
    cards = sorted({t.card_id for t in txns})
    terminals = sorted({t.terminal_id for t in txns})
    rnd = random.Random(7)
    return [
        Transaction(
            f"bench-{i}",
            cards[i % len(cards)],
            rnd.choice(terminals),
            round(rnd.lognormvariate(3.5, 1.0), 2),
            end + i * 0.001,
        )
        for i in range(CARDS)
    ]


def _serve(args: list[str], env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return process
        except OSError:
            pass
        if process.poll() is not None:
            break
        time.sleep(0.2)
    process.terminate()
    raise RuntimeError(f"{' '.join(args)} did not get ready (see {log})")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()


def bench_api(
    base: Settings,
    customers: int = 1000,
    days: float = 14.0,
    seconds: float = 8.0,
    workers: int = 1,
    folder: Path | None = None,
    say: Callable[[str], object] = print,
) -> dict[str, Any]:
    """Run the attacks above; print each, and return them with the summary."""
    import asyncio

    folder = folder or (base.services.state_dir / "bench-api").resolve()
    folder.mkdir(parents=True, exist_ok=True)
    binary = vegeta(base.services.state_dir.parent / ".cache")
    tag = f"benchapi{secrets.token_hex(3)}"
    settings = base.model_copy(
        update={
            "redis": base.redis.model_copy(update={"key_prefix": tag}),
            "topics": base.topics.model_copy(update={"prefix": f"{tag}-"}),
            "model": base.model.model_copy(
                update={"signing_key": SecretStr(secrets.token_hex(16))}
            ),
        }
    )
    say(
        f"preparing: {customers} customers, {days:g} days scored into Redis ({tag}), labels "
        "learned, champion published"
    )
    txns = asyncio.run(_prepare(settings, customers, days))
    bodies = [TransactionRecord.from_event(t).model_dump_json().encode() for t in txns]
    batches = [
        json.dumps({"transactions": [json.loads(b) for b in bodies[i : i + 100]]}).encode()
        for i in range(0, len(bodies), 100)
    ]
    env = {**os.environ, **to_env(settings)}
    api_port, bare_port = free_port(), free_port()
    api_env = {**env, "FRAUDSTREAM_API__PORT": str(api_port)}
    results: list[Attack] = []

    def run(target: str, url: str, payload: Sequence[bytes], rate: float) -> Attack:
        result = attack(binary, target, url, payload, rate, seconds, folder)
        say(result.line())
        results.append(result)
        return result

    api = _serve(["-m", "stream.cli", "api"], api_env, api_port, folder / f"{tag}-api.log")
    bare = _serve(
        [
            "-m",
            "uvicorn",
            "stream.bench.api:bare_app",
            "--factory",
            "--port",
            str(bare_port),
            "--log-level",
            "warning",
        ],
        env,
        bare_port,
        folder / f"{tag}-bare.log",
    )
    summary: dict[str, Any] = {"load_before": os.getloadavg()}
    try:
        api_url = f"http://127.0.0.1:{api_port}/v1/score"
        bare_url = f"http://127.0.0.1:{bare_port}/v1/score"
        sustained = {"api": 0.0, "bare": 0.0}
        past_knee: set[str] = set()
        for rate in LADDER:
            for name, url in (("api", api_url), ("bare", bare_url)):
                if name in past_knee:
                    continue
                outcome = run(f"{name} (1 process)", url, bodies, rate)
                if outcome.sustained:
                    sustained[name] = rate
                elif not outcome.clean or outcome.quantile(0.99) > 20 * SUSTAINED_P99_MS:
                    past_knee.add(name)  # no use going higher
            if len(past_knee) == 2:
                break
        summary["sustained"] = sustained
        one = sustained["api"]
        if one:
            plain = run("api, plain (1 process)", api_url, bodies, one / 2)
            explain = run("api, ?explain=true", api_url + "?explain=true", bodies, one / 2)
            summary["explain_p99_overhead_ms"] = explain.quantile(0.99) - plain.quantile(0.99)
            over_rate = min(3 * one, OVERLOAD_MAX)
            if over_rate < 3 * one:
                say(
                    f"3 x {one:,.0f}/s is more than the load generator offers beside the API "
                    f"on {os.cpu_count()} cores: "
                    f"overloading at {over_rate:,.0f}/s ({over_rate / one:.1f} x)"
                )
            over = run(f"api at {over_rate / one:.1f}x sustained", api_url, bodies, over_rate)
            at_one = next(r for r in results if r.target == "api (1 process)" and r.rate == one)
            summary["overload"] = overload = {
                "rate": over_rate,
                "codes": dict(over.codes),
                "p99_200_at_sustained_ms": at_one.quantile(0.99),
            }
            for part, since in (("", 0.0), ("steady_", STEADY_AFTER_S)):
                overload |= {
                    f"{part}p50_503_ms": over.quantile(0.5, 503, since),
                    f"{part}p95_503_ms": over.quantile(0.95, 503, since),
                    f"{part}p99_503_ms": over.quantile(0.99, 503, since),
                    f"{part}p99_200_ms": over.quantile(0.99, 200, since),
                }
                say(
                    f"{'':28s} {'from ' + str(since) + ' s on' if since else 'all':>10s}: "
                    f"refused p50 {overload[part + 'p50_503_ms']:.2f}, p95 "
                    f"{overload[part + 'p95_503_ms']:.2f}, p99 {overload[part + 'p99_503_ms']:.2f}"
                    f" ms; accepted p99 {overload[part + 'p99_200_ms']:.2f} ms (at {one:,.0f}/s: "
                    f"{at_one.quantile(0.99):.2f} ms)"
                )
        for rate in (50, 100, 150, 200, 300):
            batch = run(
                "api batch of 100", api_url.replace("/v1/score", "/v1/score/batch"), batches, rate
            )
            summary.setdefault("batch", []).append(
                {
                    "transactions_per_s": rate * 100,
                    "p99_ms": batch.quantile(0.99),
                    "codes": dict(batch.codes),
                }
            )
            if not batch.clean or batch.quantile(0.99) > BATCH_P99_MS:
                break
    finally:
        _stop(api)
        _stop(bare)
    if workers > 1:
        api_env["FRAUDSTREAM_API__WORKERS"] = str(workers)
        api = _serve(
            ["-m", "stream.cli", "api", "--workers", str(workers)],
            api_env,
            api_port,
            folder / f"{tag}-api-workers.log",
        )
        try:
            production = run(
                f"api ({workers} processes)", f"http://127.0.0.1:{api_port}/v1/score", bodies, 1000
            )
            summary["production"] = {
                "workers": workers,
                "p95_ms": production.quantile(0.95),
                "p99_ms": production.quantile(0.99),
                "codes": dict(production.codes),
            }
        finally:
            _stop(api)
    remove_run(settings)  # the keys of the stream scored and the champion, the topics
    load = os.getloadavg()
    summary["load_after"] = load
    bare_best = summary["sustained"]["bare"]
    summary["ratio"] = ratio = (
        summary["sustained"]["api"] / bare_best if bare_best else float("nan")
    )
    say(
        f"sustained (every answer 200, p99 <= {SUSTAINED_P99_MS:g} ms): api "
        f"{summary['sustained']['api']:,.0f}/s, bare FastAPI + one Redis GET "
        f"{bare_best:,.0f}/s: {ratio:.2f} x; load average {load[0]:.2f} {load[1]:.2f} "
        f"{load[2]:.2f} on {os.cpu_count()} cores"
    )
    (folder / f"{tag}.json").write_text(
        json.dumps(
            {
                "summary": summary,
                "attacks": [
                    {
                        "target": a.target,
                        "rate": a.rate,
                        "codes": dict(a.codes),
                        "p50_ms": a.quantile(0.5),
                        "p95_ms": a.quantile(0.95),
                        "p99_ms": a.quantile(0.99),
                        "max_ms": a.quantile(1.0),
                        "generator_cpu_s": a.generator_cpu_s,
                    }
                    for a in results
                ],
            },
            indent=1,
            default=float,
        )
    )
    return summary
