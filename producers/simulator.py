"""A small seeded simulator of card transactions and their late labels.

Transactions arrive as a Poisson process over many cards; a fraction are
fraud, which is larger and more often at night. Each transaction's label
arrives later: a fraud after ``min_label_delay`` plus an exponential delay
of mean ``fraud_delay``, a
genuine one is confirmed after ``maturity`` seconds. :func:`simulate`
returns both kinds of event merged in the order they become known, so a
publisher can emit them as they would happen.

Examples
--------
>>> events = simulate(SimulationConfig(n_transactions=50, seed=7))
>>> sum(isinstance(e, Transaction) for e in events), sum(isinstance(e, Label) for e in events)
(50, 50)
>>> simulate(SimulationConfig(n_transactions=50, seed=7)) == events
True
>>> all(a.event_time <= b.event_time for a, b in zip(events, events[1:]))
True
>>> txn_time = {e.txn_id: e.event_time for e in events if isinstance(e, Transaction)}
>>> min(e.event_time - txn_time[e.txn_id] for e in events if isinstance(e, Label)) >= 3600
True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from features.events import Label, Transaction


@dataclass(frozen=True)
class SimulationConfig:
    """What to simulate; times are event times in epoch seconds."""

    n_transactions: int = 10_000
    n_cards: int = 500
    n_terminals: int = 200
    fraud_rate: float = 0.02
    start_time: float = 1_767_225_600.0  # 2026-01-01T00:00:00Z
    mean_gap_seconds: float = 30.0
    fraud_delay_seconds: float = 6 * 3600.0
    #: No label arrives sooner than this after its transaction (a chargeback takes time).
    min_label_delay_seconds: float = 3600.0
    maturity_seconds: float = 86400.0
    seed: int = 0


def simulate(config: SimulationConfig) -> list[Transaction | Label]:
    """Transactions and labels, ordered by the time each becomes known."""
    rng = np.random.default_rng(config.seed)
    n = config.n_transactions
    times = config.start_time + np.cumsum(rng.exponential(config.mean_gap_seconds, n))
    cards = rng.integers(0, config.n_cards, n)
    terminals = rng.integers(0, config.n_terminals, n)
    hours = (times % 86400.0) / 3600.0
    night = (hours < 6.0).astype(float)
    fraud = rng.random(n) < config.fraud_rate * (0.5 + 2.0 * night)
    amounts = rng.lognormal(3.5, 0.8, n) * np.where(fraud, 4.0, 1.0)
    fraud_delays = config.min_label_delay_seconds + rng.exponential(config.fraud_delay_seconds, n)
    delays = np.where(fraud, fraud_delays, config.maturity_seconds)
    txns = [
        Transaction(f"t{i:08d}", f"c{cards[i]:05d}", f"p{terminals[i]:04d}",
                    round(float(amounts[i]), 2), float(times[i]))
        for i in range(n)
    ]
    labels = [Label(t.txn_id, bool(fraud[i]), t.event_time + float(delays[i]))
              for i, t in enumerate(txns)]
    events: list[Transaction | Label] = [*txns, *labels]
    order = np.argsort([e.event_time for e in events], kind="stable")
    return [events[i] for i in order]
