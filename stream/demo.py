"""``fraudstream demo``: the whole pipeline on this machine, until Ctrl-C.

Starts the real servers (those not yet running), the worker, the API and a
replay of a drift scenario (``--scenario``, ``--speed`` times faster than
its clock), registers the worker and API with Prometheus, then prints the
scores as they flow, the scenario day reached and each change point as it
passes, and each drift alarm as the worker raises it (read from the
``drift-events`` topic). The scenario's first change is moved to
``--change-day`` (40 by default): no detector starts before the feature state
is ``drift.state_maturity_days`` old.

When the replay has ended and the worker has scored everything (or on
Ctrl-C, or after ``--duration``) it prints the scorecard of what the stream
did (:mod:`stream.scorecard`: the scores and alarms read from Kafka, judged
against the scenario's truth and change points), writes it with its plots
into the log folder, and stops every process it started, and the servers it
started, and nothing else.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from kafka import KafkaConsumer

from monitoring.drift.base import DriftEvent
from producers.scenario import ScenarioSpec, describe, load_scenario, moved, run_scenario
from stream.runtime.monitor import decode_drift
from stream.runtime.topics import ensure_topics
from stream.services import LocalServices
from stream.settings import Settings


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


@dataclass(frozen=True)
class DemoOptions:
    """What ``fraudstream demo`` replays, and for how long (see its ``--help``)."""

    scenario: str = "sudden_covariate_shift"
    speed: float = 20_000.0
    customers: int = 500
    seed: int | None = None
    change_day: float | None = 40.0
    duration: float | None = None


def run_demo(settings: Settings, args: DemoOptions) -> int:
    spec = load_scenario(args.scenario)
    if args.change_day is not None and spec.changes:
        first = min(c.at_day for c in spec.changes)
        spec = moved(spec, args.change_day + spec.days - first, args.change_day)
    settings = _isolated(settings)
    services = LocalServices(settings.services)
    ours = [s.name for s in services.status() if s.pid is None]
    print("[demo] starting services (first run fetches Kafka and may install packages) ...")
    started = time.monotonic()
    services.up()
    print(f"[demo] services ready in {time.monotonic() - started:.1f}s")
    ensure_topics(settings)
    pipeline = settings.worker.app_id
    services.prometheus.add_target(
        "worker", "demo", f"127.0.0.1:{settings.worker.metrics_port}", pipeline, "all"
    )
    services.prometheus.add_target("api", "demo", f"127.0.0.1:{settings.api.port}", pipeline)
    env = {
        **os.environ,
        **services.endpoints(),
        **_prefixes(settings),
        "FRAUDSTREAM_MODEL__SIGNING_KEY": _signing_key(settings),
    }
    logs = settings.services.state_dir.resolve() / "demo"
    logs.mkdir(parents=True, exist_ok=True)
    replay = [
        args.scenario,
        "--speed",
        str(args.speed),
        "--customers",
        str(args.customers),
        *(["--seed", str(args.seed)] if args.seed is not None else []),
        *(["--change-day", str(args.change_day)] if args.change_day is not None else []),
    ]
    children: dict[str, subprocess.Popen[bytes]] = {}
    seen = Seen()
    try:
        for name, extra in (("worker", []), ("api", []), ("replay", replay)):
            children[name] = _spawn(name, extra, env, logs / f"{name}.log")
        _print_where_to_look(settings, services, logs)
        print(describe(spec))
        _follow_scores(settings, args.duration, children, spec, seen)
    except KeyboardInterrupt:
        print("\n[demo] Ctrl-C: stopping")
    finally:
        for child in reversed(children.values()):
            _stop(child)
        stopped = [s.name for s in services.servers if s.name in ours and s.process().stop()]
        print(f"[demo] stopped worker, api, replay; services stopped: {', '.join(stopped)}")
    if seen.scores:
        _print_scorecard(settings, spec, args, seen, logs / "scorecard")
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
    return {
        "FRAUDSTREAM_TOPICS__PREFIX": settings.topics.prefix,
        "FRAUDSTREAM_REDIS__KEY_PREFIX": settings.redis.key_prefix,
    }


def _spawn(
    command: str, extra: list[str], env: dict[str, str], log: Path
) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "stream.cli", command, *extra]
    with log.open("ab") as out:
        return subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )


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


@dataclass
class Seen:
    """What the demo read from the stream: each score and each alarm."""

    scores: dict[str, tuple[float, str, float]] = field(default_factory=dict)
    alarms: list[DriftEvent] = field(default_factory=list)


def _follow_scores(
    settings: Settings,
    duration: float | None,
    children: dict[str, subprocess.Popen[bytes]],
    spec: ScenarioSpec,
    seen: Seen,
) -> None:
    scores_topic, drift_topic = settings.topics.name("scores"), settings.topics.name("drift_events")
    consumer = KafkaConsumer(  # the run's own topics: read them from their start
        scores_topic,
        drift_topic,
        bootstrap_servers=settings.kafka.bootstrap_servers,
        auto_offset_reset="earliest",
        group_id=None,
    )
    began = time.monotonic()
    window_count = 0
    window_sum = 0.0
    version = 0
    newest = 0.0
    start = spec.start.timestamp()
    end = start + spec.days * 86400
    pending = sorted(spec.changes, key=lambda c: c.at_day)
    last_report = last_score = began
    try:
        while duration is None or time.monotonic() - began < duration:
            for batch in consumer.poll(timeout_ms=500).values():
                for message in batch:
                    if message.topic == drift_topic:
                        event = decode_drift(message.value)
                        seen.alarms.append(event)
                        print(alarm_line(event, start), flush=True)
                        continue
                    score = json.loads(message.value)
                    at = to_seconds(score["event_time"])
                    seen.scores[score["txn_id"]] = (at, score["card_id"], score["score"])
                    window_count += 1
                    window_sum += score["score"]
                    version = max(version, score["model_version"])
                    newest = max(newest, at)
                    last_score = time.monotonic()
            now = time.monotonic()
            if now - last_report >= 5:
                mean = window_sum / window_count if window_count else float("nan")
                day = (newest - start) / 86400 if newest else 0.0
                print(
                    f"[demo] {now - began:5.0f}s  day {day:5.1f}  scores: {len(seen.scores):7d}"
                    f"  {window_count / (now - last_report):6.0f}/s  mean score {mean:.3f}  "
                    f"model v{version}",
                    flush=True,
                )
                while pending and day >= pending[0].at_day:
                    change = pending.pop(0)
                    print(
                        f"[demo] >>> change point passed (day {change.at_day:g}): {change.what}",
                        flush=True,
                    )
                last_report, window_count, window_sum = now, 0, 0.0
            for name in ("worker", "api"):  # these must stay up (the replay may finish)
                if children[name].poll() is not None:
                    raise RuntimeError(
                        f"{name} exited with {children[name].returncode}; see its log"
                    )
            traffic_over = children["replay"].poll() is not None or newest >= end - 3600
            if traffic_over and now - last_score > CAUGHT_UP:
                print(
                    f"[demo] the scenario's traffic is over and no score came for "
                    f"{CAUGHT_UP:g}s: done (chargebacks still due are not waited for)"
                )
                return
    finally:
        consumer.close()


#: Once the replay ended or reached the scenario's last day, the demo stops when no score
#: came for this many seconds.
CAUGHT_UP = 15.0


def _print_scorecard(
    settings: Settings, spec: ScenarioSpec, args: DemoOptions, seen: Seen, folder: Path
) -> None:
    """The scorecard of what the stream scored and alarmed, against the scenario's truth."""
    from stream.scorecard.judge import ScorecardOptions, from_stream, scorecard, summary_lines
    from stream.scorecard.report import write_html, write_plots

    simulation, manifest = run_scenario(spec, args.seed, customers=args.customers)
    result = from_stream(seen.scores, seen.alarms, simulation.labels, settings.model.name)
    truth = dict(simulation.labels.select("txn_id", "is_fraud").iter_rows())
    card = scorecard(
        result,
        truth,
        ScorecardOptions.of(settings.model),
        manifest["change_points"],
        {"name": f"{spec.name} (the stream, as scored by the worker)"},
    )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "scorecard.json").write_text(json.dumps(card, indent=1) + "\n")
    plots = write_plots(folder, result, card, None)
    write_html(folder / "report.html", card, plots)
    print("[demo] scorecard of what the stream did:")
    for line in summary_lines(card):
        print(f"[demo]   {line}")
    print(f"[demo] written to {folder}/report.html")


def alarm_line(event: DriftEvent, start: float) -> str:
    """How the demo prints an alarm, in scenario days.

    >>> alarm_line(DriftEvent("psi", "txn_amount_log", 0.31, 2000, 86400.0 * 41, 86400.0 * 42.5), 0)
    '[demo] !!! ALARM psi on txn_amount_log = 0.31 at day 42.5 (change from day 41.0)'
    """
    return (
        f"[demo] !!! ALARM {event.detector} on {event.subject} = {event.magnitude:.4g} at "
        f"day {(event.first_seen - start) / 86400:.1f} (change from day "
        f"{(event.changed_at - start) / 86400:.1f})"
    )


def to_seconds(iso: str) -> float:
    """Epoch seconds of an ISO time from a score record.

    >>> to_seconds("2026-01-01T00:00:01Z")
    1767225601.0
    """
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
