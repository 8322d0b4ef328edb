"""Each scenario's manifest matches its data: its statistic moves at the change, not before."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from producers.generator import DAY, Simulation
from producers.scenario import (
    ScenarioError,
    builtin_scenarios,
    describe,
    load_scenario,
    run_scenario,
)
from tests.support import num


def scenario(name: str) -> tuple[Simulation, dict[str, Any], float]:
    simulation, manifest = run_scenario(load_scenario(name))
    start = simulation.transactions["event_time"].min()
    assert isinstance(start, float)
    return simulation, manifest, float(np.floor(start / DAY) * DAY)


def between(frame: pl.DataFrame, start: float, days: tuple[float, float]) -> pl.DataFrame:
    lo, hi = start + days[0] * DAY, start + days[1] * DAY
    return frame.filter((pl.col("event_time") >= lo) & (pl.col("event_time") < hi))


def log_amount(frame: pl.DataFrame) -> float:
    return num(frame.filter(~pl.col("is_fraud"))["amount"].log().mean())


def with_region(simulation: Simulation) -> pl.DataFrame:
    pop = simulation.population
    assert pop is not None
    north = pop.region_north()[pop.card_customer]
    cards = simulation.transactions["card_id"].str.slice(1).cast(pl.Int64).to_numpy()
    return simulation.transactions.with_columns(north=pl.Series(north[cards]))


def the_change(manifest: dict[str, Any]) -> dict[str, Any]:
    [point] = manifest["change_points"]
    assert point["index"] > 0 and point["at"].endswith("Z")
    return dict(point)


def test_every_builtin_scenario_loads_and_describes_itself() -> None:
    assert len(builtin_scenarios()) == 9
    for name in builtin_scenarios():
        assert name in describe(load_scenario(name))


def test_the_manifest_index_is_the_first_transaction_at_the_change() -> None:
    simulation, manifest, _ = scenario("prior_shift")
    point = the_change(manifest)
    times = simulation.transactions["event_time"]
    assert times[point["index"]] >= point["event_time"] > times[point["index"] - 1]


def test_baseline_has_no_change_and_stays_steady() -> None:
    simulation, manifest, start = scenario("baseline")
    assert manifest["change_points"] == []
    txns = simulation.transactions
    first, second = between(txns, start, (0, 14)), between(txns, start, (14, 28))
    assert abs(log_amount(first) - log_amount(second)) < 0.05
    ratio = num(second["is_fraud"].mean()) / num(first["is_fraud"].mean())
    assert 0.6 < ratio < 1.6


def test_sudden_covariate_shift_moves_northern_amounts_at_the_change_only() -> None:
    simulation, manifest, start = scenario("sudden_covariate_shift")
    day = the_change(manifest)["params"]["at_day"]
    txns = with_region(simulation)
    north, south = txns.filter(pl.col("north")), txns.filter(~pl.col("north"))
    before = between(north, start, (day - 3, day))
    earlier = between(north, start, (day - 6, day - 3))
    after = between(north, start, (day, day + 3))
    assert log_amount(after) - log_amount(before) > 0.7  # log(2.5) = 0.92
    assert abs(log_amount(before) - log_amount(earlier)) < 0.1
    assert (
        abs(
            log_amount(between(south, start, (day, day + 3)))
            - log_amount(between(south, start, (day - 3, day)))
        )
        < 0.1
    )


def test_gradual_drift_starts_small_and_completes() -> None:
    simulation, manifest, start = scenario("gradual_drift")
    params = the_change(manifest)["params"]
    day, over = params["at_day"], params["over_days"]
    txns = simulation.transactions
    base = log_amount(between(txns, start, (day - 3, day)))
    assert abs(log_amount(between(txns, start, (day - 6, day - 3))) - base) < 0.1
    assert log_amount(between(txns, start, (day, day + 1))) - base < 0.3
    assert log_amount(between(txns, start, (day + over, day + over + 3))) - base > 0.7


def test_incremental_drift_grows_slowly() -> None:
    simulation, manifest, start = scenario("incremental_drift")
    day = the_change(manifest)["params"]["at_day"]
    txns = simulation.transactions
    base = log_amount(between(txns, start, (day - 3, day)))
    early = log_amount(between(txns, start, (day, day + 2))) - base
    late = log_amount(between(txns, start, (25, 28))) - base
    assert early < 0.15 < 0.5 < late


def test_recurring_context_doubles_volume_on_each_peak() -> None:
    simulation, manifest, start = scenario("recurring_context")
    params = the_change(manifest)["params"]
    days = np.floor((simulation.transactions["event_time"].to_numpy() - start) / DAY)
    per_day = np.bincount(days.astype(int), minlength=28)
    peak = np.zeros(28, bool)
    for first in range(int(params["at_day"]), 28, int(params["period_days"])):
        peak[first : first + int(params["duration_days"])] = True
    assert per_day[peak].mean() / per_day[~peak].mean() > 1.6
    assert not peak[: int(params["at_day"])].any()


def test_concept_drift_pattern_appears_only_after_the_change() -> None:
    simulation, manifest, start = scenario("concept_drift")
    day = the_change(manifest)["params"]["at_day"]
    new = simulation.transactions.filter(pl.col("pattern") == "merchant_fraud")
    assert between(new, start, (0, day)).height == 0
    assert between(new, start, (day, 28)).height > 100


def test_prior_shift_triples_the_fraud_rate() -> None:
    simulation, manifest, start = scenario("prior_shift")
    day = the_change(manifest)["params"]["at_day"]
    txns = simulation.transactions
    before, after = between(txns, start, (0, day)), between(txns, start, (day, 28))
    ratio = num(after["is_fraud"].mean()) / num(before["is_fraud"].mean())
    assert 2.2 < ratio < 4.0


def test_label_delay_shift_slows_fraud_labels_for_later_transactions() -> None:
    simulation, manifest, start = scenario("label_delay_shift")
    day = the_change(manifest)["params"]["at_day"]
    delays = (
        simulation.labels.join(
            simulation.transactions.select("txn_id", t="event_time"), on="txn_id"
        )
        .filter(pl.col("is_fraud"))
        .with_columns(delay=pl.col("event_time") - pl.col("t"))
    )

    def median_delay(days: tuple[float, float]) -> float:
        return num(
            between(delays.with_columns(event_time=pl.col("t")), start, days)["delay"].median()
        )

    assert 3.5 < median_delay((day, 28)) / median_delay((0, day)) < 7
    assert 0.6 < median_delay((0, day / 2)) / median_delay((day / 2, day)) < 1.6


def test_a_user_scenario_file_needs_no_python(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(
        "name: my_spike\ndescription: fraud doubles for a week\ndays: 10\n"
        "population: {customers: 300, terminals: 150}\n"
        "changes:\n  - {kind: fraud_rate, at_day: 5, factor: 2, what: fraud x2}\n"
    )
    simulation, manifest = run_scenario(load_scenario(path))
    assert (
        manifest["scenario"] == "my_spike" and manifest["change_points"][0]["kind"] == "fraud_rate"
    )
    assert simulation.transactions.height > 1000


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("name: x\ndescription: d\nchanges:\n  - {kind: meteor, at_day: 1, what: w}\n", "kind"),
        (
            "name: x\ndescription: d\nchanges:\n  - {kind: fraud_rate, at_day: -1, what: w}\n",
            "at_day",
        ),
        ("name: x\ndescription: d\nsurprise: 1\n", "surprise"),
        ("name: [unclosed\n", "not valid YAML"),
    ],
)
def test_a_bad_scenario_file_names_the_field(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(body)
    with pytest.raises(ScenarioError, match=message):
        load_scenario(path)
