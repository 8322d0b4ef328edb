"""The simulator: a population's genuine traffic, fraud patterns, late labels, drift.

Vectorised with numpy (no Python loop per transaction) and deterministic:
the same configuration and seed give the same bytes. :func:`generate`
returns the transactions (with ground truth: ``is_fraud`` and ``pattern``)
and the labels ordered by their **arrival** time.

- Genuine traffic: each card's count per day is Poisson with the customer's
  rate, a weekly profile (busier Friday and Saturday, quiet Sunday) and any
  volume change; times around the customer's active hours; amounts
  log-normal around the customer's mean; terminals near home.
- Fraud: incidents per day per pattern (:mod:`producers.patterns`).
- Labels: a fraud is labelled after a log-normal delay (median
  ``fraud_median_days``, with a ``tail_share`` of much later ones around
  ``tail_median_days``; never sooner than ``min_delay_hours``); a genuine
  transaction is confirmed after ``maturity_days`` (plus up to a day).
- Drift: :class:`Change` entries (see :mod:`producers.scenario`).

Examples
--------
>>> cfg = SimulatorConfig(population=PopulationConfig(customers=200, terminals=100), days=3)
>>> sim = generate(cfg)
>>> sim.transactions.columns[:6]
['txn_id', 'card_id', 'terminal_id', 'amount', 'event_time', 'lat']
>>> sim.labels["event_time"].is_sorted()
True
>>> generate(cfg).transactions.equals(sim.transactions)
True
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import polars as pl

from features.events import Label, Transaction
from producers.patterns import GENERATORS, PATTERNS, Columns, Incidents
from producers.population import Population, PopulationConfig, build_population

DAY = 86400.0
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z, a Thursday
#: Relative volume per day of week, Monday first.
WEEKLY = np.array([0.95, 0.95, 1.0, 1.0, 1.15, 1.2, 0.75])


@dataclass(frozen=True)
class LabelConfig:
    """When labels arrive."""

    fraud_median_days: float = 2.0
    fraud_sigma: float = 0.6
    tail_share: float = 0.1
    tail_median_days: float = 14.0
    min_delay_hours: float = 1.0
    maturity_days: float = 7.0


@dataclass(frozen=True)
class Change:
    """One drift, starting ``at_day`` days into the simulation.

    ``kind``: ``amount_shift`` (amounts x ``factor`` for ``region``; ``mode``
    sudden, gradual (the new concept's share rises over ``over_days``) or
    incremental (the factor itself rises over ``over_days``)),
    ``volume_peak`` (volume x ``factor`` for ``duration_days``, again every
    ``period_days``), ``fraud_rate`` (fraud incidents x ``factor``),
    ``new_pattern`` (``pattern`` starts, ``per_day`` incidents), or
    ``label_delay`` (fraud label delays x ``factor``). ``what``,
    ``features`` and ``model_effect`` describe it in the manifest.
    """

    kind: str
    at_day: float
    factor: float = 1.0
    mode: str = "sudden"
    over_days: float = 0.0
    region: str = "all"
    duration_days: float = 0.0
    period_days: float = 0.0
    pattern: str = ""
    per_day: float = 0.0
    what: str = ""
    features: tuple[str, ...] = ()
    model_effect: str = ""


@dataclass(frozen=True)
class SimulatorConfig:
    population: PopulationConfig = field(default_factory=PopulationConfig)
    days: float = 28.0
    start_time: float = T0
    #: Fraud incidents per day, per pattern.
    patterns: dict[str, float] = field(
        default_factory=lambda: {
            "compromised_terminal": 0.3,
            "stolen_card": 3.0,
            "card_testing": 2.0,
            "account_takeover": 2.0,
            "high_amount": 4.0,
        }
    )
    labels: LabelConfig = field(default_factory=LabelConfig)
    changes: tuple[Change, ...] = ()
    seed: int = 0


@dataclass(frozen=True)
class Simulation:
    """Transactions (time order, with ground truth) and labels (arrival order)."""

    transactions: pl.DataFrame
    labels: pl.DataFrame
    #: Who pays where (None for a family without one, :mod:`producers.compromise`).
    population: Population | None

    def until_traffic_ends(self) -> Simulation:
        """Without the labels that arrive after the last transaction.

        A live stream never ends. A simulated one does, and the chargebacks
        still to come after it are the slow ones: in arrival order they look
        like a growing delay. Drift measurements stop where the traffic does.
        """
        return replace(self, labels=arrived_by_the_end(self.transactions, self.labels))

    def events(self) -> list[Transaction | Label]:
        """Both as core events, in the order they become known (a transaction first on a tie).

        For small runs and tests; replays encode column-wise instead.
        """
        txns = [
            Transaction(i, c, p, a, t, lat=la, lon=lo)
            for i, c, p, a, t, la, lo in self.transactions.select(
                "txn_id", "card_id", "terminal_id", "amount", "event_time", "lat", "lon"
            ).iter_rows()
        ]
        cards = {txn.txn_id: txn.card_id for txn in txns}
        labels = [
            Label(i, f, t, cards.get(i))
            for i, f, t in self.labels.select("txn_id", "is_fraud", "event_time").iter_rows()
        ]
        merged: list[Transaction | Label] = [*txns, *labels]
        order = np.lexsort(([isinstance(e, Label) for e in merged], [e.event_time for e in merged]))
        return [merged[i] for i in order]


def arrived_by_the_end(transactions: pl.DataFrame, labels: pl.DataFrame) -> pl.DataFrame:
    """The labels that arrive by the last transaction (see
    :meth:`Simulation.until_traffic_ends`).

    Parameters
    ----------
    transactions
        The transactions (their ``event_time`` in epoch seconds).
    labels
        The labels (their ``event_time``, the arrival, in epoch seconds).
    """
    if transactions.is_empty():
        return labels
    return labels.filter(pl.col("event_time") <= transactions["event_time"].max())


def generate(config: SimulatorConfig) -> Simulation:
    """Simulate ``config``; deterministic in its seed."""
    rng = np.random.default_rng(config.seed)
    pop = build_population(config.population, rng)
    legit = _genuine(config, pop, rng)
    frauds = [legit]
    for name, per_day in _pattern_rates(config).items():
        incidents = _incidents(config, pop, name, per_day, rng)
        frauds.append(GENERATORS[name](pop, legit, incidents, rng))
    cols = Columns.concat(frauds)
    end = config.start_time + config.days * DAY
    keep = cols.time < end
    order = np.argsort(cols.time[keep], kind="stable")
    cols = Columns(
        *(getattr(cols, f)[keep][order] for f in ("time", "card", "terminal", "amount", "pattern"))
    )
    transactions = _frame(pop, cols)
    return Simulation(transactions, _labels(config, cols, transactions, rng), pop)


def _genuine(config: SimulatorConfig, pop: Population, rng: np.random.Generator) -> Columns:
    days = int(np.ceil(config.days))
    day_index = np.arange(days)
    weekday = (np.floor(config.start_time / DAY + day_index).astype(int) + 3) % 7
    volume = WEEKLY[weekday] * _volume_factors(config, day_index)
    customers = pop.card_customer
    per_card = pop.rate_per_day[customers] / pop.cards_per_customer[customers]
    counts = rng.poisson(per_card[:, None] * volume[None, :])
    flat = np.repeat(np.arange(counts.size), counts.ravel())
    card, day = flat // days, flat % days
    who = customers[card]
    hours = np.mod(rng.normal(pop.peak_hour[who], pop.hour_spread[who]), 24.0)
    time = config.start_time + day * DAY + hours * 3600.0
    amount = rng.lognormal(pop.amount_mu[who], pop.amount_sigma[who])
    amount *= _amount_factors(config, pop, who, time, rng)
    start, stop = pop.nearby_start[who], pop.nearby_start[who + 1]
    terminal = pop.nearby_terminals[start + (rng.random(len(who)) * (stop - start)).astype(int)]
    return Columns(
        time, card, terminal, np.maximum(np.round(amount, 2), 0.01), np.full(len(card), -1)
    )


def _volume_factors(config: SimulatorConfig, day_index: np.ndarray) -> np.ndarray:
    factor = np.ones(len(day_index))
    for c in config.changes:
        if c.kind == "volume_peak":
            since = day_index - c.at_day
            period = c.period_days or np.inf
            inside = (since >= 0) & (np.mod(since, period) < c.duration_days)
            factor[inside] *= c.factor
    return factor


def _amount_factors(
    config: SimulatorConfig,
    pop: Population,
    who: np.ndarray,
    time: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    factor = np.ones(len(who))
    north = pop.region_north()[who]
    for c in config.changes:
        if c.kind != "amount_shift":
            continue
        region = {"all": np.ones(len(who), bool), "north": north, "south": ~north}[c.region]
        elapsed = (time - config.start_time) / DAY - c.at_day
        progress = np.clip(elapsed / c.over_days, 0, 1) if c.over_days else (elapsed >= 0) * 1.0
        progress = np.where(elapsed >= 0, progress, 0.0)
        if c.mode == "incremental":
            factor *= np.where(region, 1 + (c.factor - 1) * progress, 1.0)
        else:  # sudden, or gradual: each transaction follows the new concept with a rising chance
            new = rng.random(len(who)) < progress
            factor *= np.where(region & new, c.factor, 1.0)
    return factor


def _pattern_rates(config: SimulatorConfig) -> dict[str, float]:
    rates = dict(config.patterns)
    for c in config.changes:
        if c.kind == "new_pattern":
            rates.setdefault(c.pattern, 0.0)
    return {name: rate for name, rate in rates.items() if name in GENERATORS}


def _incidents(
    config: SimulatorConfig, pop: Population, name: str, per_day: float, rng: np.random.Generator
) -> Incidents:
    days = int(np.ceil(config.days))
    rate = np.full(days, per_day)
    for c in config.changes:
        after = np.arange(days) >= c.at_day
        if c.kind == "fraud_rate":
            rate[after] *= c.factor
        elif c.kind == "new_pattern" and c.pattern == name:
            rate[after] += c.per_day
    counts = rng.poisson(rate)
    day = np.repeat(np.arange(days), counts)
    start = config.start_time + (day + rng.random(len(day))) * DAY
    targets = len(pop.terminal_lat) if name == "compromised_terminal" else len(pop.card_customer)
    return Incidents(start, rng.integers(0, targets, len(day)))


def _frame(pop: Population, cols: Columns) -> pl.DataFrame:
    pattern = np.array(["", *PATTERNS])[cols.pattern + 1]
    return pl.DataFrame(
        {
            "i": np.arange(len(cols)),
            "card": cols.card,
            "terminal": cols.terminal,
            "amount": np.round(cols.amount, 2),
            "event_time": np.round(cols.time, 3),
            "lat": np.round(pop.terminal_lat[cols.terminal], 5),
            "lon": np.round(pop.terminal_lon[cols.terminal], 5),
            "pattern": pattern,
        }
    ).select(
        pl.format("t{}", pl.col("i").cast(pl.Utf8).str.zfill(9)).alias("txn_id"),
        pl.format("c{}", pl.col("card").cast(pl.Utf8).str.zfill(6)).alias("card_id"),
        pl.format("p{}", pl.col("terminal").cast(pl.Utf8).str.zfill(5)).alias("terminal_id"),
        "amount",
        "event_time",
        "lat",
        "lon",
        (pl.col("pattern") != "").alias("is_fraud"),
        pl.when(pl.col("pattern") != "").then(pl.col("pattern")).alias("pattern"),
    )


def _labels(
    config: SimulatorConfig, cols: Columns, transactions: pl.DataFrame, rng: np.random.Generator
) -> pl.DataFrame:
    cfg = config.labels
    fraud = cols.pattern >= 0
    tail = rng.random(len(cols)) < cfg.tail_share
    median = np.where(tail, cfg.tail_median_days, cfg.fraud_median_days) * DAY
    delay = np.exp(np.log(median) + rng.normal(0, cfg.fraud_sigma, len(cols)))
    for c in config.changes:
        if c.kind == "label_delay":
            delay *= np.where(cols.time >= config.start_time + c.at_day * DAY, c.factor, 1.0)
    delay = np.maximum(delay, cfg.min_delay_hours * 3600)
    genuine = cfg.maturity_days * DAY + rng.uniform(0, DAY, len(cols))
    arrival = np.round(cols.time + np.where(fraud, delay, genuine), 3)
    return pl.DataFrame(
        {
            "txn_id": transactions["txn_id"],
            "is_fraud": fraud,
            "event_time": arrival,
        }
    ).sort("event_time", maintain_order=True)
