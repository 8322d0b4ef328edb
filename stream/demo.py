"""``fraudstream demo``: the whole pipeline on this machine, until Ctrl-C.

Starts the real servers (those not yet running), the worker, the API and a
replay of a drift scenario (``--scenario``, ``--speed`` times faster than
its clock), registers the worker and API with Prometheus, then prints the
scores as they flow, the scenario day reached and each change point as it
passes. Each run has its own topics and Redis keys. On Ctrl-C (or after
``--duration``) it stops every process it started, and the servers it
started, and nothing else.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from kafka import KafkaConsumer

from producers.scenario import ScenarioSpec, describe, load_scenario
from stream.services import LocalServices
from stream.settings import Settings
from stream.topics import ensure_topics


def _signing_key(settings: Settings) -> str:
    """The configured key, else one generated once into the state folder."""
    if settings.model.signing_key is not None:
        return settings.model.signing_key.get_secret_value()
    path = settings.services.state_dir / "signing.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip()


def run_demo(settings: Settings, args: argparse.Namespace) -> int:
    spec = load_scenario(args.scenario)
    settings = _isolated(settings)
    services = LocalServices(settings.services)
    ours = [s.name for s in services.status() if s.pid is None]
    print("[demo] starting services (first run fetches Kafka and may install packages) ...")
    started = time.monotonic()
    services.up()
    print(f"[demo] services ready in {time.monotonic() - started:.1f}s")
    ensure_topics(settings)
    services.prometheus.add_target("worker", "demo", f"127.0.0.1:{settings.worker.metrics_port}")
    services.prometheus.add_target("api", "demo", f"127.0.0.1:{settings.api.port}")
    env = {**os.environ, **services.endpoints(), **_prefixes(settings),
           "FRAUDSTREAM_MODEL__SIGNING_KEY": _signing_key(settings)}
    logs = settings.services.state_dir.resolve() / "demo"
    logs.mkdir(parents=True, exist_ok=True)
    replay = [args.scenario, "--speed", str(args.speed), "--customers", str(args.customers),
              *(["--seed", str(args.seed)] if args.seed is not None else [])]
    children: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name, extra in (("worker", []), ("api", []), ("replay", replay)):
            children[name] = _spawn(name, extra, env, logs / f"{name}.log")
        _print_where_to_look(settings, services, logs)
        print(describe(spec))
        _follow_scores(settings, args.duration, children, spec)
    except KeyboardInterrupt:
        print("\n[demo] Ctrl-C: stopping")
    finally:
        for child in reversed(children.values()):
            _stop(child)
        stopped = [s.name for s in services.servers if s.name in ours and s.process().stop()]
        print(f"[demo] stopped worker, api, replay; services stopped: {', '.join(stopped)}")
    return 0


def _isolated(settings: Settings) -> Settings:
    """Each demo run gets its own topics and Redis keys (unless you chose a prefix), so a
    re-run with the same seed is not taken for a redelivery of the last run's events."""
    tag = f"demo{int(time.time())}"
    update: dict[str, object] = {}
    if not settings.topics.prefix:
        update["topics"] = settings.topics.model_copy(update={"prefix": f"{tag}-"})
    if settings.redis.key_prefix == "fs":
        update["redis"] = settings.redis.model_copy(update={"key_prefix": tag})
    return settings.model_copy(update=update)


def _prefixes(settings: Settings) -> dict[str, str]:
    return {"FRAUDSTREAM_TOPICS__PREFIX": settings.topics.prefix,
            "FRAUDSTREAM_REDIS__KEY_PREFIX": settings.redis.key_prefix}


def _spawn(
    command: str, extra: list[str], env: dict[str, str], log: Path
) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "stream.cli", command, *extra]
    with log.open("ab") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)


def _stop(child: subprocess.Popen[bytes]) -> None:
    if child.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGTERM)
    try:
        child.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()


def _print_where_to_look(settings: Settings, services: LocalServices, logs: Path) -> None:
    api = f"http://{settings.api.host}:{settings.api.port}"
    print(f"""
[demo] everything is starting. Where to look:
  API docs          {api}/docs      (POST /v1/score, GET /healthz)
  API metrics       {api}/metrics
  worker metrics    http://{settings.worker.metrics_host}:{settings.worker.metrics_port}/metrics
  Prometheus        {services.prometheus.url}/graph?g0.expr=rate(fraudstream_scores_out_total[1m])
  Alertmanager      {services.alertmanager.url}
  logs              {logs}/(worker|api|replay).log
  Ctrl-C stops everything the demo started.
""")


def _follow_scores(settings: Settings, duration: float | None,
                   children: dict[str, subprocess.Popen[bytes]], spec: ScenarioSpec) -> None:
    consumer = KafkaConsumer(
        settings.topics.name("scores"), bootstrap_servers=settings.kafka.bootstrap_servers,
        auto_offset_reset="latest", group_id=None,
    )
    began = time.monotonic()
    seen = window_count = 0
    window_sum = 0.0
    version = 0
    newest = 0.0
    start = spec.start.timestamp()
    pending = sorted(spec.changes, key=lambda c: c.at_day)
    last_report = began
    try:
        while duration is None or time.monotonic() - began < duration:
            for batch in consumer.poll(timeout_ms=500).values():
                for message in batch:
                    score = json.loads(message.value)
                    seen += 1
                    window_count += 1
                    window_sum += score["score"]
                    version = max(version, score["model_version"])
                    newest = max(newest, to_seconds(score["event_time"]))
            now = time.monotonic()
            if now - last_report >= 5:
                mean = window_sum / window_count if window_count else float("nan")
                day = (newest - start) / 86400 if newest else 0.0
                print(f"[demo] {now - began:5.0f}s  day {day:5.1f}  scores: {seen:7d}  "
                      f"{window_count / (now - last_report):6.0f}/s  mean score {mean:.3f}  "
                      f"model v{version}", flush=True)
                while pending and day >= pending[0].at_day:
                    change = pending.pop(0)
                    print(f"[demo] >>> change point passed (day {change.at_day:g}): "
                          f"{change.what}", flush=True)
                last_report, window_count, window_sum = now, 0, 0.0
            for name in ("worker", "api"):  # these must stay up (the replay may finish)
                if children[name].poll() is not None:
                    raise RuntimeError(f"{name} exited with {children[name].returncode}; "
                                       "see its log")
    finally:
        consumer.close()


def to_seconds(iso: str) -> float:
    """Epoch seconds of an ISO time from a score record.

    >>> to_seconds("2026-01-01T00:00:01Z")
    1767225601.0
    """
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
