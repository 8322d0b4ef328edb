"""The contract every drift detector meets, checked over every detector.

Each watches one kind of observation (:class:`~monitoring.drift.base.TxnObservation` or
:class:`~monitoring.drift.base.LabelObservation`); fed a seeded stream whose every watched
quantity changes at one point, each must: meet the :class:`Detector` protocol; raise only
the (detector, subject) pairs it declares; date each alarm at the observation that raised
it, with a change time no later; raise nothing on the steady part and something after the
change; give the same alarms for the same stream (no clock, no unseeded randomness);
take missing and non-finite values without failing; and go on after ``refresh``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from monitoring.drift.base import Detector, DriftEvent, LabelObservation, TxnObservation
from monitoring.drift.concept import ConceptDrift
from monitoring.drift.config import DriftConfig
from monitoring.drift.data import DataDrift
from monitoring.drift.kswin import SampledKSWIN
from monitoring.drift.labels import LabelDrift
from monitoring.drift.mean_shift import MeanShift
from monitoring.drift.missed_fraud import MissedFraud
from monitoring.drift.prediction import PredictionDrift
from monitoring.drift_metrics import DriftMetrics
from monitoring.monitor import DriftMonitor

CONFIG = DriftConfig(
    reference_size=500,
    window_size=500,
    check_every=50,
    reference_days=0,
    kswin_every=60,
    kswin_window=400,
    kswin_stat_size=100,
    mean_shift_block=10,
    ert_runs=50,
    label_delay_frauds=20,
    missed_fraud_reference=50,
)
CHANGE = 3000  # the observation at which everything watched changes
TRANSACTIONS: dict[str, Callable[[], Detector[TxnObservation]]] = {
    "data": lambda: DataDrift(CONFIG, ["x"]),
    "kswin": lambda: SampledKSWIN(CONFIG, ["x"]),
    # (its threshold is simulated from the reference: a day of blocks, not 20)
    "mean_shift": lambda: MeanShift(CONFIG.model_copy(update=dict(reference_days=1)), ["x"]),
    "prediction": lambda: PredictionDrift(CONFIG, threshold=0.5),
}
LABELS: dict[str, Callable[[], Detector[LabelObservation]]] = {
    "labels": lambda: LabelDrift(CONFIG),
    "concept": lambda: ConceptDrift(CONFIG),
    "missed_fraud": lambda: MissedFraud(CONFIG, threshold=0.5),
}


def scorings(seed: int = 0, n: int = 6000) -> Iterator[TxnObservation]:
    """A transaction a minute; its feature and its score move up at ``CHANGE``."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        after = i >= CHANGE
        yield TxnObservation(
            i * 60.0,
            {"x": float(rng.normal(2.0 if after else 0.0))},
            float(rng.beta(6, 3) if after else rng.beta(2, 8)),
        )


def outcomes(seed: int = 0, n: int = 8000) -> Iterator[LabelObservation]:
    """A label every ten minutes, each fraud on its own card and terminal; at ``CHANGE``
    frauds become ten times as common, their chargebacks five times slower, and the
    champion misses them."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        after = i >= CHANGE
        fraud = bool(rng.random() < (0.2 if after else 0.02))
        if fraud:
            score = float(rng.beta(2, 8) if after else rng.beta(8, 2))
            delay = float(rng.lognormal(13.0 if after else 11.4, 0.3))
        else:
            score, delay = float(rng.beta(1, 20)), 7 * 86400.0
        yield LabelObservation(i * 600.0, fraud, score, delay, card=f"c{i}", terminal=f"t{i}")


def stream_of(name: str) -> Iterator[TxnObservation] | Iterator[LabelObservation]:
    return scorings() if name in TRANSACTIONS else outcomes()


def feed(detector: Detector[Any], observations: Iterable[Any]) -> list[tuple[float, DriftEvent]]:
    """Every alarm, with the event time of the observation that raised it."""
    return [(seen.at, event) for seen in observations for event in detector.update(seen)]


FACTORIES: dict[str, Callable[[], Detector[Any]]] = {**TRANSACTIONS, **LABELS}


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_every_detector_keeps_the_contract(name: str) -> None:
    detector = FACTORIES[name]()
    assert isinstance(detector, Detector)
    raised = feed(detector, stream_of(name))
    keys = set(detector.alarm_keys())
    assert raised, f"{name} raised nothing on a stream that changed"
    change_at = CHANGE * (60.0 if name in TRANSACTIONS else 600.0)
    for at, event in raised:
        assert (event.detector, event.subject) in keys
        assert event.first_seen == at
        assert event.changed_at <= event.first_seen
        assert math.isfinite(event.magnitude) and event.window > 0
        assert at >= change_at, f"{name} alarmed on the steady part: {event}"
    again = feed(FACTORIES[name](), stream_of(name))
    assert again == raised  # the same stream, the same alarms


@pytest.mark.parametrize("name", sorted(TRANSACTIONS))
def test_transaction_detectors_take_missing_and_non_finite_values(name: str) -> None:
    detector = TRANSACTIONS[name]()
    for i, seen in enumerate(scorings(n=2000)):
        vector = {} if i % 3 == 0 else {"x": math.nan if i % 3 == 1 else math.inf}
        detector.update(TxnObservation(seen.at, vector, seen.score))
        detector.update(seen)
    detector.refresh()
    assert [e for seen in scorings(n=500) for e in detector.update(seen)] == []


@pytest.mark.parametrize("name", sorted(LABELS))
def test_label_detectors_go_on_after_a_refresh(name: str) -> None:
    detector = LABELS[name]()
    feed(detector, outcomes(n=2000))
    detector.refresh()
    assert feed(detector, outcomes(seed=1, n=1000)) == []


def test_the_monitor_runs_every_detector_there_is() -> None:
    monitor = DriftMonitor(CONFIG, ["x"], 0.5, DriftMetrics.create(CollectorRegistry()))
    assert {type(d) for d in monitor.detectors} == {type(f()) for f in FACTORIES.values()}
