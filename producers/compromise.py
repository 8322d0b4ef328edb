"""A second, independently designed generator family: fraud by compromise.

The behavioural simulator (:mod:`producers.generator`) was designed beside
the features, so it can hide their weaknesses. This family follows another
design, the one of a public teaching dataset of card fraud, and shares no
code or assumption with the first:

- **Who pays where.** Customers and terminals are points on a 100 x 100
  grid. Each customer has a mean amount (uniform 5 to 100, standard
  deviation half of it) and a mean number of transactions a day (uniform
  0 to 4). A customer pays at the terminals within ``radius`` of home,
  chosen uniformly at random.
- **When.** Each day a Poisson number of transactions, at a time of day
  normal around noon (standard deviation about 5.5 hours). There is no
  weekly cycle and no location in the records.
- **Fraud**, in three ways, none of them behavioural:
  1. every amount above ``amount_threshold`` is a fraud;
  2. each day a Poisson number (mean ``terminals_per_day``) of terminals are
     compromised for ``terminal_days``: every transaction there is a fraud;
  3. each day a Poisson number (mean ``cards_per_day``) of customers are
     compromised for
     ``card_days``: a ``card_share`` of their transactions get amounts
     ``card_factor`` times higher, and are frauds.
- **Labels.** Every label, fraud or genuine, arrives a fixed
  ``label_delay_days`` after its transaction.

Deterministic in its seed; vectorised with numpy.

Examples
--------
>>> sim = generate_compromise(CompromiseConfig(customers=300, terminals=600, days=20))
>>> sim.transactions.columns
['txn_id', 'card_id', 'terminal_id', 'amount', 'event_time', 'is_fraud', 'pattern']
>>> sorted(sim.transactions["pattern"].drop_nulls().unique())
['compromised_card', 'compromised_terminal', 'over_threshold']
>>> sim.labels["event_time"].is_sorted(), generate_compromise(CompromiseConfig(
...     customers=300, terminals=600, days=20)).transactions.equals(sim.transactions)
(True, True)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from producers.generator import T0, Simulation

DAY = 86400.0
PATTERNS = ("over_threshold", "compromised_terminal", "compromised_card")


@dataclass(frozen=True)
class CompromiseConfig:
    """The compromise family's parameters (see the module's docs)."""

    customers: int = 5000
    terminals: int = 10_000
    days: float = 120.0
    start_time: float = T0
    radius: float = 5.0
    amount_threshold: float = 220.0
    terminals_per_day: float = 2.0
    terminal_days: float = 28.0
    cards_per_day: float = 3.0
    card_days: float = 14.0
    card_share: float = 1 / 3
    card_factor: float = 5.0
    label_delay_days: float = 7.0
    seed: int = 0


def _nearby(
    customer_xy: np.ndarray, terminal_xy: np.ndarray, radius: float
) -> tuple[np.ndarray, np.ndarray]:
    """For each customer, the terminals within ``radius``: (offsets, terminal indices)."""
    found: list[np.ndarray] = []
    for start in range(0, len(customer_xy), 256):  # 256 customers x every terminal at once
        part = customer_xy[start : start + 256]
        d2 = ((part[:, None, :] - terminal_xy[None, :, :]) ** 2).sum(axis=2)
        found += [np.flatnonzero(row) for row in d2 < radius * radius]
    sizes = np.array([len(f) for f in found], dtype=np.int64)
    offsets = np.r_[0, np.cumsum(sizes)]
    indices = np.concatenate(found) if found else np.array([], dtype=np.int64)
    return offsets, indices


def generate_compromise(config: CompromiseConfig) -> Simulation:
    """Simulate ``config``: transactions in time order, labels in arrival order."""
    rng = np.random.default_rng(config.seed)
    n_c, n_t = config.customers, config.terminals
    customer_xy = rng.uniform(0, 100, (n_c, 2))
    mean_amount = rng.uniform(5, 100, n_c)
    per_day = rng.uniform(0, 4, n_c)
    terminal_xy = rng.uniform(0, 100, (n_t, 2))
    offsets, indices = _nearby(customer_xy, terminal_xy, config.radius)
    choices = np.diff(offsets)

    days = int(np.ceil(config.days))
    counts = rng.poisson(np.tile(per_day, days))  # day-major: day d, customer c
    customer = np.repeat(np.tile(np.arange(n_c), days), counts)
    day = np.repeat(np.repeat(np.arange(days), n_c), counts)
    seconds = rng.normal(DAY / 2, 20_000, len(customer))
    keep = (seconds >= 0) & (seconds < DAY) & (choices[customer] > 0)
    customer, day, seconds = customer[keep], day[keep], seconds[keep]
    time = config.start_time + day * DAY + seconds
    amount = rng.normal(mean_amount[customer], mean_amount[customer] / 2)
    negative = amount < 0
    amount[negative] = rng.uniform(0, 2 * mean_amount[customer[negative]])
    pick = (rng.random(len(customer)) * choices[customer]).astype(np.int64)
    terminal = indices[offsets[customer] + pick]
    order = np.argsort(time, kind="stable")
    customer, terminal = customer[order], terminal[order]
    time, amount = time[order], amount[order]

    pattern = np.full(len(time), -1, dtype=np.int8)
    pattern[amount > config.amount_threshold] = 0
    end = config.start_time + config.days * DAY
    for d in range(days):
        at = config.start_time + d * DAY
        hit_terminals = min(int(rng.poisson(config.terminals_per_day)), n_t)
        for t in rng.choice(n_t, size=hit_terminals, replace=False):
            hit = (terminal == t) & (time >= at) & (time < at + config.terminal_days * DAY)
            pattern[hit & (pattern < 0)] = 1
        for c in rng.choice(
            n_c, size=min(int(rng.poisson(config.cards_per_day)), n_c), replace=False
        ):
            window = np.flatnonzero(
                (customer == c)
                & (time >= at)
                & (time < at + config.card_days * DAY)
                & (pattern < 0)
            )
            chosen = window[rng.random(len(window)) < config.card_share]
            amount[chosen] *= config.card_factor
            pattern[chosen] = 2
    keep = time < end
    return _simulation(
        customer[keep],
        terminal[keep],
        time[keep],
        amount[keep],
        pattern[keep],
        config.label_delay_days,
    )


def _simulation(
    customer: np.ndarray,
    terminal: np.ndarray,
    time: np.ndarray,
    amount: np.ndarray,
    pattern: np.ndarray,
    delay_days: float,
) -> Simulation:
    names = np.array(["", *PATTERNS])[pattern.astype(np.int64) + 1]
    transactions = pl.DataFrame(
        {
            "i": np.arange(len(time)),
            "card": customer,
            "terminal": terminal,
            "amount": np.round(amount, 2),
            "event_time": np.round(time, 3),
            "pattern": names,
        }
    ).select(
        pl.format("k{}", pl.col("i").cast(pl.Utf8).str.zfill(9)).alias("txn_id"),
        pl.format("cust{}", pl.col("card").cast(pl.Utf8).str.zfill(6)).alias("card_id"),
        pl.format("term{}", pl.col("terminal").cast(pl.Utf8).str.zfill(6)).alias("terminal_id"),
        "amount",
        "event_time",
        (pl.col("pattern") != "").alias("is_fraud"),
        pl.when(pl.col("pattern") != "").then(pl.col("pattern")).alias("pattern"),
    )
    labels = transactions.select(
        "txn_id",
        "is_fraud",
        (pl.col("event_time") + delay_days * DAY).round(3).alias("event_time"),
    ).sort("event_time", maintain_order=True)
    return Simulation(transactions, labels, None)
