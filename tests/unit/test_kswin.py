"""QuickKSWIN alarms exactly when River's KSWIN does (its cost is measured by the
scorecard's events/s, not here)."""

from __future__ import annotations

import random

import pytest
from river import drift

from monitoring.drift.kswin import QuickKSWIN


@pytest.mark.parametrize("seed", range(4))
def test_quick_kswin_raises_rivers_alarms_and_exact_p_values_where_it_could(seed: int) -> None:
    rnd = random.Random(seed)
    # Steady, then a shift, then steady again: quiet stretches and alarms alike.
    values = (
        [rnd.gauss(0, 1) for _ in range(1500)]
        + [rnd.gauss(0.6, 1) for _ in range(700)]
        + [rnd.lognormvariate(0, 1) for _ in range(800)]
    )
    quick = QuickKSWIN(alpha=1e-4, window_size=576, stat_size=72, seed=seed)
    river = drift.KSWIN(alpha=1e-4, window_size=576, stat_size=72, seed=seed)
    alarms = exact = 0
    for x in values:
        quick.update(x)
        river.update(x)
        assert quick.drift_detected == river.drift_detected
        alarms += quick.drift_detected
        if len(river.window) >= 576 and quick.p_value < 0.5:
            assert quick.p_value == pytest.approx(river.p_value, rel=0.5)
        if river.p_value < 0.01:  # where an alarm is near, the p-value is River's own
            assert quick.p_value == pytest.approx(river.p_value, rel=1e-9)
            exact += 1
    assert alarms >= 1 and exact >= 1
