"""``fraudstream bench drift``: how soon each detector fires after each scenario's change.

Every built-in scenario (500 customers) is replayed through the stream's own
feature code; an online logistic regression scores and learns as in the
worker; the detectors (default settings) are fed from day ``warm_days`` on.
For each detector, the first alarm is reported relative to the manifest's
change point (or to the start, for ``baseline``), in hours and in
transactions.
"""

from __future__ import annotations

import asyncio

from features.events import Transaction
from features.vector import FEATURE_NAMES
from models.factory import build_model, fraud_probability, learn
from monitoring.detectors import (
    ConceptDrift,
    DataDrift,
    DriftConfig,
    DriftEvent,
    LabelDrift,
    PredictionDrift,
)
from producers.scenario import builtin_scenarios, load_scenario, run_scenario
from stream.replay import replay_features
from stream.worker import CYCLIC, SLOW

DAY = 86400.0


def first_alarms(name: str, warm_days: float = 7.0,
                 customers: int = 500) -> tuple[float | None, dict[str, tuple[float, int]]]:
    """The change time, and per detector/subject the first alarm (time, transactions after)."""
    simulation, manifest = run_scenario(load_scenario(name), customers=customers)
    events = simulation.events()
    records = asyncio.run(replay_features(events))
    start = float(simulation.transactions["event_time"][0]) // DAY * DAY
    points = manifest["change_points"]
    change = points[0]["event_time"] if points else None
    config = DriftConfig()
    data = DataDrift(config, [f for f in FEATURE_NAMES if f not in CYCLIC | SLOW])
    prediction, labels, concept = PredictionDrift(config), LabelDrift(config), ConceptDrift(config)
    model, scores, after = build_model("logistic_regression"), {}, 0
    found: dict[str, tuple[float, int]] = {}

    def note(alarms: list[DriftEvent]) -> None:
        for a in alarms:
            found.setdefault(f"{a.detector} {a.subject}", (a.first_seen, after))

    for event in events:
        record = records.get(event.txn_id)
        warm = event.event_time >= start + warm_days * DAY
        if isinstance(event, Transaction):
            if record is None:
                continue
            score = scores[event.txn_id] = fraud_probability(model, record.features)
            after += bool(change is not None and event.event_time >= change)
            if warm:
                note(data.update(record.features, event.event_time)
                     + prediction.update(score, event.event_time))
        elif record is not None and event.txn_id in scores:
            if warm:
                note(labels.update(event.is_fraud, event.event_time - record.event_time,
                                   event.event_time)
                     + concept.update(scores[event.txn_id], event.is_fraud, event.event_time))
            learn(model, record.features, event.is_fraud)
    return change, found


def bench_drift() -> int:
    for name in builtin_scenarios():
        change, found = first_alarms(name)
        print(f"{name}: " + ("no change point" if change is None else "change point"))
        for key, (when, after) in sorted(found.items(), key=lambda kv: kv[1][0])[:12]:
            if change is None:
                print(f"  {key:36s} alarm at event time {when:.0f} (no change: a false alarm)")
            else:
                print(f"  {key:36s} {(when - change) / 3600:8.1f} h after the change "
                      f"({after} transactions after it)")
    return 0
