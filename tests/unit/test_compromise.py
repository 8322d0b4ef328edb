"""The compromise family: its three frauds, its fixed label delay, its determinism."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from producers.compromise import CompromiseConfig, generate_compromise
from producers.generator import Simulation
from producers.scenario import ScenarioError, load_scenario, run_scenario
from tests.support import num

DAY = 86400.0


@pytest.fixture(scope="module")
def simulation() -> Simulation:
    return generate_compromise(
        CompromiseConfig(
            customers=1500,
            terminals=3000,
            days=60,
            seed=3,
            terminals_per_day=0.6,
            cards_per_day=0.9,
        )
    )


def test_amounts_over_the_threshold_are_fraud_and_compromised_cards_pay_more(
    simulation: Simulation,
) -> None:
    txns = simulation.transactions
    plain = txns.filter(pl.col("pattern").is_null() | (pl.col("pattern") == "over_threshold"))
    assert (plain["is_fraud"] == (plain["amount"] > 220)).all()
    cards = txns.filter(pl.col("pattern") == "compromised_card")
    genuine = txns.filter(~pl.col("is_fraud"))
    assert cards.height > 100
    assert num(cards["amount"].median()) > 3 * num(genuine["amount"].median())


def test_a_compromised_terminal_turns_every_payment_there_into_fraud(
    simulation: Simulation,
) -> None:
    txns = simulation.transactions
    hit = txns.filter(pl.col("pattern") == "compromised_terminal")
    assert hit.height > 100
    # Inside the span of a terminal's compromised payments, nothing there is genuine
    # (unless a later incident: spans are checked on terminals hit in a single run).
    spans = hit.group_by("terminal_id").agg(
        pl.col("event_time").min().alias("first"), pl.col("event_time").max().alias("last")
    )
    short = spans.filter(pl.col("last") - pl.col("first") < 28 * DAY)
    inside = txns.join(short, on="terminal_id").filter(
        (pl.col("event_time") >= pl.col("first")) & (pl.col("event_time") <= pl.col("last"))
    )
    assert short.height > 10 and inside["is_fraud"].all()


def test_every_label_comes_a_fixed_delay_later_and_fraud_is_about_one_percent(
    simulation: Simulation,
) -> None:
    txns, labels = simulation.transactions, simulation.labels
    joined = txns.join(labels, on="txn_id", suffix="_label")
    assert joined.height == txns.height == labels.height
    assert ((joined["event_time_label"] - joined["event_time"] - 7 * DAY).abs() < 1e-3).all()
    assert (joined["is_fraud"] == joined["is_fraud_label"]).all()
    assert 0.004 < num(txns["is_fraud"].mean()) < 0.02
    assert "lat" not in txns.columns and txns["event_time"].is_sorted()


def test_the_compromise_scenario_scales_with_customers_and_takes_no_changes(tmp_path: Path) -> None:
    simulation, manifest = run_scenario(load_scenario("compromise"), customers=400, days=15)
    assert manifest["change_points"] == [] and manifest["scenario"] == "compromise"
    assert simulation.transactions["card_id"].n_unique() <= 400
    again, _ = run_scenario(load_scenario("compromise"), customers=400, days=15)
    assert again.transactions.equals(simulation.transactions)
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: bad\ndescription: x\nfamily: compromise\nchanges:\n"
        "  - {kind: fraud_rate, at_day: 3, what: more}\n"
    )
    with pytest.raises(ScenarioError, match="compromise family takes no changes"):
        load_scenario(bad)
