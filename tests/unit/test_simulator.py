"""The simulator: deterministic, patterns as documented, labels as configured."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from producers import patterns
from producers.dataset import read_dataset, write_dataset
from producers.generator import DAY, T0, LabelConfig, SimulatorConfig, generate
from producers.patterns import Columns, Incidents
from producers.population import Population, PopulationConfig, build_population, distance_km
from producers.scenario import load_scenario, run_scenario
from tests.support import num

SMALL = SimulatorConfig(population=PopulationConfig(customers=400, terminals=200), days=14)


@pytest.fixture(scope="module")
def population() -> Population:
    return build_population(
        PopulationConfig(customers=300, terminals=150), np.random.default_rng(5)
    )


def test_the_same_seed_gives_the_same_bytes(tmp_path: Path) -> None:
    spec = load_scenario("concept_drift")
    first, manifest = run_scenario(spec, days=7, customers=300)
    again, _ = run_scenario(spec, days=7, customers=300)
    write_dataset(first, manifest, tmp_path / "a")
    write_dataset(again, manifest, tmp_path / "b")
    for name in ("transactions.parquet", "labels.parquet", "manifest.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    other, _ = run_scenario(spec, seed=99, days=7, customers=300)
    assert not other.transactions.equals(first.transactions)


def test_a_dataset_reads_back_as_written(tmp_path: Path) -> None:
    simulation = generate(SMALL)
    write_dataset(simulation, {}, tmp_path)
    transactions, labels = read_dataset(tmp_path)
    assert transactions.equals(simulation.transactions)
    assert labels.equals(simulation.labels)


def legit(pop: Population, n: int = 5000) -> Columns:
    rng = np.random.default_rng(3)
    card = rng.integers(0, len(pop.card_customer), n)
    customers = pop.card_customer[card]
    start, stop = pop.nearby_start[customers], pop.nearby_start[customers + 1]
    terminal = pop.nearby_terminals[start + (rng.random(n) * (stop - start)).astype(int)]
    amount = rng.lognormal(pop.amount_mu[customers], pop.amount_sigma[customers])
    return Columns(T0 + rng.uniform(0, 20 * DAY, n), card, terminal, amount, np.full(n, -1))


def test_a_compromised_terminal_makes_everything_at_it_fraud_for_days(
    population: Population,
) -> None:
    traffic = legit(population)
    target = int(np.bincount(traffic.terminal).argmax())
    start = T0 + 5 * DAY
    patterns.compromised_terminal(
        population,
        traffic,
        Incidents(np.array([start]), np.array([target])),
        np.random.default_rng(0),
    )
    at = traffic.terminal == target
    fraud = traffic.pattern == patterns.PATTERNS.index("compromised_terminal")
    assert fraud[at & (traffic.time >= start) & (traffic.time < start + 2 * DAY)].all()
    assert not fraud[~at].any()
    assert not fraud[at & ((traffic.time < start) | (traffic.time >= start + 5 * DAY))].any()


def usual(pop: Population, cards: np.ndarray) -> np.ndarray:
    return np.asarray(np.exp(pop.amount_mu[pop.card_customer[cards]]))


def incidents(n: int, pop: Population) -> Incidents:
    rng = np.random.default_rng(1)
    return Incidents(T0 + rng.uniform(0, 10 * DAY, n), rng.integers(0, len(pop.card_customer), n))


def test_a_stolen_card_spends_more_at_new_terminals(population: Population) -> None:
    out = patterns.stolen_card(
        population, legit(population), incidents(200, population), np.random.default_rng(2)
    )
    assert np.median(out.amount / usual(population, out.card)) > 2.0
    home = [set(population.nearby(c)) for c in population.card_customer[out.card]]
    assert np.mean([t not in h for t, h in zip(out.terminal, home, strict=True)]) > 0.8


def test_card_testing_is_tiny_amounts_then_large_ones(population: Population) -> None:
    inc = incidents(100, population)
    out = patterns.card_testing(population, legit(population), inc, np.random.default_rng(3))
    for card, start in zip(inc.target, inc.start, strict=True):
        mine = (out.card == card) & (out.time >= start) & (out.time < start + 3 * 3600)
        order = np.argsort(out.time[mine])
        amounts, times = out.amount[mine][order], out.time[mine][order] - start
        tiny = amounts <= 2.0
        assert tiny.sum() >= 3 and (times[tiny] < 600).all()
        assert (times[~tiny] >= 600).all() and len(amounts[~tiny]) >= 1


def test_account_takeover_pays_far_from_home(population: Population) -> None:
    out = patterns.account_takeover(
        population, legit(population), incidents(100, population), np.random.default_rng(4)
    )
    who = population.card_customer[out.card]
    far = distance_km(
        population.customer_lat[who],
        population.customer_lon[who],
        population.terminal_lat[out.terminal],
        population.terminal_lon[out.terminal],
    )
    assert np.median(far) > 400


def test_high_amount_fraud_is_an_order_of_magnitude_above_usual(
    population: Population,
) -> None:
    out = patterns.high_amount(
        population, legit(population), incidents(300, population), np.random.default_rng(5)
    )
    assert np.median(out.amount / usual(population, out.card)) > 8


def test_merchant_fraud_looks_like_normal_spending_at_a_usual_terminal(
    population: Population,
) -> None:
    out = patterns.merchant_fraud(
        population, legit(population), incidents(300, population), np.random.default_rng(6)
    )
    assert 0.7 < np.median(out.amount / usual(population, out.card)) < 1.4
    customers = population.card_customer[out.card]
    for customer, terminal in zip(customers, out.terminal, strict=True):
        start, stop = population.nearby_start[customer], population.nearby_start[customer + 1]
        assert terminal in population.nearby_terminals[start:stop]


def test_fraud_incidents_and_label_delays_match_the_configuration() -> None:
    config = replace(
        SMALL,
        days=28,
        patterns={"high_amount": 5.0},
        labels=LabelConfig(
            fraud_median_days=3.0, fraud_sigma=0.5, tail_share=0.0, maturity_days=5.0
        ),
    )
    simulation = generate(config)
    txns = simulation.transactions
    frauds = txns.filter(pl.col("is_fraud"))
    expected = 5.0 * 28
    assert abs(frauds.height - expected) < 4 * expected**0.5  # Poisson, 4 sigma
    delays = simulation.labels.join(
        txns.select("txn_id", t="event_time"), on="txn_id"
    ).with_columns(delay=(pl.col("event_time") - pl.col("t")) / DAY)
    fraud_delay = delays.filter(pl.col("is_fraud"))["delay"]
    assert abs(num(fraud_delay.median()) - 3.0) < 0.4
    assert num(fraud_delay.min()) >= 1 / 24
    genuine = delays.filter(~pl.col("is_fraud"))["delay"]
    assert num(genuine.min()) >= 5.0 and num(genuine.max()) <= 6.0
    assert simulation.labels["event_time"].is_sorted()


def test_customers_pay_near_home() -> None:
    simulation = generate(
        replace(SMALL, population=PopulationConfig(customers=400, terminals=2000))
    )
    pop = simulation.population
    assert pop is not None
    txns = simulation.transactions.filter(~pl.col("is_fraud"))
    card = txns["card_id"].str.slice(1).cast(pl.Int64).to_numpy()
    terminal = txns["terminal_id"].str.slice(1).cast(pl.Int64).to_numpy()
    who = pop.card_customer[card]
    far = distance_km(
        pop.customer_lat[who],
        pop.customer_lon[who],
        pop.terminal_lat[terminal],
        pop.terminal_lon[terminal],
    )
    anywhere = distance_km(
        pop.customer_lat[who],
        pop.customer_lon[who],
        pop.terminal_lat[terminal[::-1]],
        pop.terminal_lon[terminal[::-1]],
    )
    # within radius_km (30) of home, or among the 3 nearest where terminals are sparse
    assert np.median(far) < 30 < 300 < np.median(anywhere)


def test_until_traffic_ends_drops_only_the_labels_that_come_after_the_last_transaction() -> None:
    simulation = generate(SMALL)
    end = num(simulation.transactions["event_time"].max())
    cut = simulation.until_traffic_ends()
    late = simulation.labels.filter(pl.col("event_time") > end)
    assert late.height > 0 and cut.labels.height == simulation.labels.height - late.height
    assert num(cut.labels["event_time"].max()) <= end
    assert cut.transactions.equals(simulation.transactions)
