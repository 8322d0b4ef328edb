"""On a simulated stream with late labels, learning online beats training once and freezing."""

from __future__ import annotations

from producers.scenario import load_scenario, run_scenario
from stream.evaluate import FROZEN, evaluate


def test_the_online_model_beats_a_frozen_one_after_the_concept_changes() -> None:
    simulation, manifest = run_scenario(load_scenario("concept_drift"), customers=300)
    runs, freeze = evaluate(simulation, ["logistic_regression"], freeze_after_days=12.0)
    online, frozen = (run.metrics.report(since=freeze) for run in runs)
    assert runs[1].name == FROZEN and runs[1].learned < runs[0].learned
    assert online["frauds"] == frozen["frauds"] > 30  # the same labelled transactions
    assert online["average_precision_all"] > frozen["average_precision_all"] + 0.05
    assert manifest["change_points"][0]["event_time"] == freeze  # the new pattern starts then
