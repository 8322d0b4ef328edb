"""``fraudstream bench drift``: every detector judged on every scenario and on steady seeds.

Each built-in scenario, lengthened to ``days`` with its first change moved to
``change_day`` (no detector starts before the feature state is
``state_maturity_days`` old), and ``baseline`` with ``baseline_seeds`` seeds,
is run through the embedded pipeline (:mod:`stream.scorecard.embedded`: the worker's
scoring, learning and monitor, with the worker's settings). Its alarms are
judged against the manifest (:mod:`monitoring.judging`): an alarm within
``max_delay`` after a change is true, any other is false.

Printed: per run, each detector's first alarm after the change (or the
false ones); then per detector, over all runs, recall, precision, mean and
median delay and false alarms per 30 days; and the targets: every scenario
detected, median delay at most a day, at most one false alarm per 30
simulated days across all detectors.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from monitoring.drift.config import DriftConfig
from monitoring.judging import Alarm, judge
from producers.scenario import builtin_scenarios, load_scenario, moved, run_scenario
from stream.scorecard.embedded import run_embedded
from stream.scorecard.options import EmbeddedOptions
from stream.sources import events_from_frames

DAY = 86400.0


@dataclass
class Run:
    """One scenario (one seed): its change times, alarms and span."""

    name: str
    seed: int | None
    changes: list[float]
    alarms: list[Alarm]
    start: float
    end: float
    seconds: float

    @property
    def days(self) -> float:
        return (self.end - self.start) / DAY


def run_one(
    name: str,
    config: DriftConfig,
    customers: int,
    days: float,
    change_day: float,
    seed: int | None = None,
    snapshot_every_labels: int = 100,
) -> Run:
    """Scenario ``name`` (moved), through the embedded pipeline; its alarms."""
    spec = moved(load_scenario(name), days, change_day)
    simulation, manifest = run_scenario(spec, seed=seed, customers=customers)
    simulation = simulation.until_traffic_ends()
    started = time.perf_counter()
    result = run_embedded(
        events_from_frames(simulation.transactions, simulation.labels),
        EmbeddedOptions(
            drift=config, freeze_after_days=None, snapshot_every_labels=snapshot_every_labels
        ),
    )
    times = simulation.transactions["event_time"]
    return Run(
        name,
        seed,
        [p["event_time"] for p in manifest["change_points"]],
        [Alarm(e.detector, e.subject, e.first_seen) for e in result.alarms],
        float(times.min()),  # type: ignore[arg-type]
        float(times.max()),  # type: ignore[arg-type]
        time.perf_counter() - started,
    )


@dataclass
class Tally:
    """One detector over every run."""

    changes: int = 0
    detected: int = 0
    delays: list[float] = field(default_factory=list)
    alarms: int = 0
    false: int = 0
    steady: int = 0

    def add(self, judged: dict[str, object] | None, changes: int) -> None:
        self.changes += changes
        if judged is None:
            return
        self.detected += len(judged["detected"])  # type: ignore[arg-type]
        self.delays += list(judged["delays_hours"].values())  # type: ignore[attr-defined]
        self.alarms += int(judged["alarms"])  # type: ignore[call-overload]
        self.false += int(judged["false_alarms"])  # type: ignore[call-overload]
        self.steady += int(judged["steady_false_alarms"])  # type: ignore[call-overload]


def steady_days(runs: list[Run]) -> float:
    """Days of steady data: each run up to its first change (or its end)."""
    return sum((min(r.changes, default=r.end) - r.start) / DAY for r in runs)


def tally(runs: list[Run], max_delay: float) -> tuple[dict[str, Tally], float]:
    """Per detector (and ``any``) over ``runs``; the days they span."""
    judged = [(judge(r.alarms, r.changes, r.start, r.end, max_delay), len(r.changes)) for r in runs]
    names = sorted({name for one, _ in judged for name in one["detectors"]})
    out = {name: Tally() for name in [*names, "any"]}
    for one, changes in judged:
        for name in names:
            out[name].add(one["detectors"].get(name), changes)
        out["any"].add(one["any"], changes)
    return out, sum(r.days for r in runs)


def _fmt(value: float, digits: int = 1) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def table(tallies: dict[str, Tally], days: float, steady: float) -> list[str]:
    """A Markdown table: per detector, recall, precision, delays, false alarms (all, and
    those on the ``steady`` days before any change)."""
    lines = [
        "| detector | changes detected | recall | precision | mean delay h | "
        "median delay h | false alarms | false per 30 days | on steady data | "
        "steady false per 30 days |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in sorted(tallies, key=lambda n: (n == "any", n)):
        t = tallies[name]
        recall = t.detected / t.changes if t.changes else math.nan
        precision = (t.alarms - t.false) / t.alarms if t.alarms else math.nan
        mean = statistics.fmean(t.delays) if t.delays else math.nan
        median = statistics.median(t.delays) if t.delays else math.nan
        lines.append(
            f"| {name} | {t.detected}/{t.changes} | {_fmt(recall, 2)} | "
            f"{_fmt(precision, 2)} | {_fmt(mean)} | {_fmt(median)} | {t.false} | "
            f"{t.false / days * 30:.2f} | {t.steady} | {t.steady / steady * 30:.2f} |"
        )
    return lines


def bench_drift(
    config: DriftConfig,
    baseline_seeds: int = 10,
    customers: int = 1000,
    days: float = 56,
    change_day: float = 42,
    max_delay: float = 3 * DAY,
    write: Callable[[str], object] = print,
) -> int:
    write(
        f"{customers} customers, {days:g} days, changes moved to day {change_day:g}, "
        f"{baseline_seeds} steady seeds, an alarm is true within {max_delay / 3600:g} h "
        "after a change"
    )
    runs: list[Run] = []
    drifting = [n for n in builtin_scenarios() if load_scenario(n).family == "behavioural"]
    for name in drifting:
        seeds: list[int | None] = [None]
        if name == "baseline":
            seeds += list(range(100, 100 + baseline_seeds - 1))
        for seed in seeds:
            run = run_one(name, config, customers, days, change_day, seed)
            runs.append(run)
            write(_run_line(run, max_delay))
    tallies, total_days = tally(runs, max_delay)
    steady = steady_days(runs)
    write(
        f"\nAll {len(runs)} runs ({total_days:.0f} simulated days, {steady:.0f} of them "
        "before any change; no detector starts before drift.state_maturity_days):"
    )
    for line in table(tallies, total_days, steady):
        write(line)
    any_ = tallies["any"]
    missed = [
        r.name
        for r in runs
        if r.changes
        and not judge(r.alarms, r.changes, r.start, r.end, max_delay)["any"]["detected"]
    ]
    median = statistics.median(any_.delays) if any_.delays else math.nan
    detected = "yes" if not missed else "no, missed " + ", ".join(missed)
    write(
        f"\nTargets: every scenario detected: {detected}; "
        f"median first-alarm delay {_fmt(median)} h (target <= 24); "
        f"false alarms {any_.false / total_days * 30:.2f} per 30 days across detectors, "
        f"{any_.steady / steady * 30:.2f} on steady data (target <= 1)"
    )
    return 0


def _run_line(run: Run, max_delay: float) -> str:
    title = run.name if run.seed is None else f"{run.name} (seed {run.seed})"
    first: dict[str, Alarm] = {}
    for alarm in sorted(run.alarms, key=lambda a: a.at):
        first.setdefault(alarm.detector, alarm)
    change = run.changes[0] if run.changes else None
    parts = []
    for detector, alarm in sorted(first.items(), key=lambda kv: kv[1].at):
        if change is None:
            day = (alarm.at - run.start) / DAY
            parts.append(f"{detector} ({alarm.subject}) at day {day:.1f}")
        else:
            parts.append(f"{detector} ({alarm.subject}) {(alarm.at - change) / 3600:+.1f} h")
    what = "; ".join(parts) if parts else "no alarm"
    return f"{title} [{run.seconds:.0f}s]: {what}"
