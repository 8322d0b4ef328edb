"""On a simulated stream with late labels, learning online beats training once and freezing."""

from __future__ import annotations

import pytest

from producers.scenario import load_scenario, run_scenario
from stream.bench.evaluate import FROZEN, evaluate


@pytest.mark.parametrize("scenario", ["sudden_covariate_shift", "concept_drift"])
def test_the_online_model_beats_a_frozen_one_after_the_change(scenario: str) -> None:
    simulation, manifest = run_scenario(load_scenario(scenario), customers=500)
    runs, freeze = evaluate(simulation, ["logistic_regression"], freeze_after_days=14.0)
    online, frozen = (run.metrics.report(since=freeze) for run in runs)
    assert runs[1].name == FROZEN and runs[1].learned < runs[0].learned
    assert online["frauds"] == frozen["frauds"] > 50  # the same labelled transactions
    assert online["average_precision_all"] > frozen["average_precision_all"]
    assert manifest["change_points"][0]["event_time"] <= freeze  # the drift came first
