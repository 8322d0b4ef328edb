"""The fraud-rate detector on clustered frauds: quiet on bursts, alarmed by a real jump."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import numpy as np

from monitoring.drift.base import LabelObservation
from monitoring.drift.config import DriftConfig
from monitoring.drift.labels import LabelDrift
from monitoring.drift.stats import dispersion

CONFIG = DriftConfig(reference_size=5000, window_size=2000, check_every=250, warm_up=0)
#: fraud_rate_block larger than the reference: one block, so no dispersion (plain binomial).
PLAIN = CONFIG.model_copy(update=dict(fraud_rate_block=10**9))
SEEDS = range(12)


def clustered(
    seed: int, n: int = 16000, change_at: int | None = None, factor: float = 1.0
) -> np.ndarray:
    """Fraud flags in arrival order, about 1%: incidents of 1 + Poisson(5) frauds each,
    spread over the next 300 labels (a stolen card used several times)."""
    rng = np.random.default_rng(seed)
    fraud = np.zeros(n + 300, dtype=bool)
    for i in range(n):
        rate = 0.0017 * (factor if change_at is not None and i >= change_at else 1.0)
        if rng.random() < rate:
            fraud[i + rng.integers(0, 300, 1 + rng.poisson(5))] = True
    return fraud[:n]


def first_fraud_rate_alarm(config: DriftConfig, flags: np.ndarray) -> float | None:
    detector = LabelDrift(config)
    alarms = [
        e.first_seen
        for i, flag in enumerate(flags)
        for e in detector.update(LabelObservation(float(i), bool(flag), delay=1e5))
        if e.detector == "fraud_rate"
    ]
    return min(alarms, default=None)


def test_clustered_frauds_are_overdispersed_and_independent_ones_are_not() -> None:
    rng = np.random.default_rng(0)
    # dispersion reads any sequence of 0/1 flags: numpy arrays of them too.
    assert dispersion(cast("Sequence[float]", rng.random(20000) < 0.01), 500) < 1.5
    assert dispersion(cast("Sequence[float]", clustered(0)), 500) > 2.5


def test_dispersion_spares_steady_bursts_that_a_binomial_test_pages_on() -> None:
    plain = [first_fraud_rate_alarm(PLAIN, clustered(s)) for s in SEEDS]
    aware = [first_fraud_rate_alarm(CONFIG, clustered(s)) for s in SEEDS]
    plain_false, aware_false = sum(a is not None for a in plain), sum(a is not None for a in aware)
    assert aware_false < plain_false
    assert aware_false <= len(SEEDS) // 6


def test_a_fourfold_fraud_rate_is_still_caught_after_the_change() -> None:
    """The price of fewer false pages: a real jump is caught later, or (here, 4 in 12)
    not within 12,000 labels. The plain binomial test catches 11 in 12."""
    change = 8000
    firsts = [
        first_fraud_rate_alarm(CONFIG, clustered(100 + s, 20000, change, factor=4.0)) for s in SEEDS
    ]
    caught = [f - change for f in firsts if f is not None and f >= change]
    assert len(caught) >= len(SEEDS) * 2 // 3
    assert float(np.median(caught)) <= CONFIG.window_size * 1.5
