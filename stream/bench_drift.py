"""``fraudstream bench drift``: how soon each detector fires after each scenario's change.

Every built-in scenario is replayed through the stream's own feature code; an
online logistic regression scores and learns as in the worker (labels in
arrival order, from the stored vectors); the worker's own
:class:`~monitoring.monitor.DriftMonitor` watches it with the default
settings, its model detectors armed after ``warm_up`` labels. For each
detector, the first alarm is reported relative to the manifest's change
point. ``baseline`` has no change: every alarm on it is a false alarm, so it
is run with several seeds.

The model detectors start only once the model has learned ``warm_up``
labels, and the first week of labels is all fraud (genuine transactions are
labelled at maturity). So the scenarios are lengthened and their changes moved
later (``days``, ``change_day``) so that the change comes after the warm-up.
"""

from __future__ import annotations

import asyncio
import copy
from dataclasses import dataclass
from functools import partial

from prometheus_client import CollectorRegistry

from features.events import Transaction
from features.store import ScoredRecord
from features.vector import FEATURE_NAMES
from models.factory import build_model, fraud_probabilities, fraud_probability, learn
from monitoring.detectors import DriftConfig, Scorer
from monitoring.monitor import DriftMetrics, DriftMonitor
from producers.scenario import ScenarioSpec, builtin_scenarios, load_scenario, moved, run_scenario
from stream.replay import replay_features
from stream.worker import CYCLIC, SLOW

#: The worker publishes (and so rescores with) a new model version every this many labels.
PUBLISH_EVERY = 500


@dataclass(frozen=True)
class Alarm:
    """The first alarm of one detector on one subject."""

    key: str
    event_time: float
    #: Transactions after the change point when it fired.
    after: int


def first_alarms(spec: ScenarioSpec, config: DriftConfig, customers: int = 200,
                 seed: int | None = None) -> tuple[float | None, list[Alarm]]:
    """The change time of scenario ``spec``, and each detector's first alarm, in time order."""
    simulation, manifest = run_scenario(spec, seed=seed, customers=customers)
    events = simulation.until_traffic_ends().events()
    records = asyncio.run(replay_features(events))
    points = manifest["change_points"]
    change = points[0]["event_time"] if points else None
    features = [f for f in FEATURE_NAMES if f not in CYCLIC | SLOW]
    monitor = DriftMonitor(config, features, 0.5, DriftMetrics.create(CollectorRegistry()),
                           calendar=sorted(CYCLIC))
    monitor.state_began(events[0].event_time)  # the replay starts from an empty state
    model, scored, learned, after = build_model("logistic_regression"), {}, 0, 0
    snapshot = copy.deepcopy(model)
    serving = Scorer(0, partial(fraud_probabilities, snapshot))
    found: dict[str, Alarm] = {}
    for event in events:
        record = records.get(event.txn_id)
        if record is None:
            continue
        if isinstance(event, Transaction):
            score = fraud_probability(snapshot, record.features)
            scored[event.txn_id] = live = ScoredRecord(
                record.txn_id, record.card_id, record.terminal_id, record.event_time,
                record.features, score, learned // PUBLISH_EVERY)
            after += bool(change is not None and event.event_time >= change)
            alarms = monitor.on_scored(live, serving)
        elif event.txn_id in scored:
            learned += 1
            monitor.model_learned(learned)
            alarms = monitor.on_label(scored[event.txn_id], event)
            learn(model, record.features, event.is_fraud)
            if learned % PUBLISH_EVERY == 0:  # a new snapshot, as the learner publishes
                snapshot = copy.deepcopy(model)
                serving = Scorer(learned, partial(fraud_probabilities, snapshot))
        else:
            continue
        for a in alarms:
            key = f"{a.detector} {a.subject}"
            if key not in found:
                found[key] = Alarm(key, a.first_seen, after)
    return change, sorted(found.values(), key=lambda a: a.event_time)


def bench_drift(config: DriftConfig | None = None, baseline_seeds: int = 3,
                customers: int = 200, days: float = 56, change_day: float = 42) -> int:
    config = config or DriftConfig()
    print(f"{customers} customers, {days:g} days, changes moved to day {change_day:g}, "
          f"warm-up {config.warm_up} labels")
    for name in builtin_scenarios():
        seeds: list[int | None] = [None]
        if name == "baseline":
            seeds += list(range(100, 100 + baseline_seeds - 1))
        spec = moved(load_scenario(name), days, change_day)
        for seed in seeds:
            change, alarms = first_alarms(spec, config, customers, seed)
            title = name if seed is None else f"{name} (seed {seed})"
            if change is None:
                print(f"{title}: no change point, {len(alarms)} false alarm(s)")
            else:
                print(f"{title}: change point")
            for alarm in alarms[:12]:
                if change is None:
                    print(f"  {alarm.key:36s} at event time {alarm.event_time:.0f}")
                else:
                    print(f"  {alarm.key:36s} {(alarm.event_time - change) / 3600:8.1f} h after "
                          f"the change ({alarm.after} transactions after it)")
    return 0
