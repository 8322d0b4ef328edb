"""Fraud patterns: each a generator of documented, recognisable fraud.

Every pattern takes the legitimate traffic and the incidents to create (an
incident = one card or terminal attacked, starting at a time) and returns
its fraudulent transactions as columns; ``compromised_terminal`` instead
marks existing ones. Each fraudulent transaction records its pattern (ground
truth, never put on the scoring stream).

- ``compromised_terminal``: a terminal is skimmed; **every** transaction at it
  during the incident (2 to 5 days) is fraud. Amounts look normal.
- ``stolen_card``: for 1 to 3 days a card spends at terminals anywhere (new to
  it), amounts about e (2.7x) times the owner's usual.
- ``card_testing``: 3 to 8 tiny amounts (0.50 to 2.00) within 10 minutes at one
  online terminal, then 1 to 3 large ones (about 4.5x usual) within 2 hours.
- ``account_takeover``: the card suddenly pays far from home (a terminal among
  the farthest tenth), 2 to 6 times in a day, amounts about 2x usual.
- ``high_amount``: one transaction at a usual terminal, about 12x the usual amount.
- ``merchant_fraud``: the new pattern of the concept-drift scenario: 2 to 4
  frauds over 3 days at one of the cardholder's usual terminals, with usual
  amounts and hours; the inputs look normal, only the terminal's risk gives it
  away.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from producers.population import CATEGORIES, Population, distance_km

#: Pattern name -> code stored in the ``pattern`` column (-1: genuine).
PATTERNS: tuple[str, ...] = (
    "compromised_terminal",
    "stolen_card",
    "card_testing",
    "account_takeover",
    "high_amount",
    "merchant_fraud",
)
_ONLINE = CATEGORIES.index("online")


@dataclass(frozen=True)
class Columns:
    """Transactions as arrays: time (epoch s), card, terminal, amount, pattern code."""

    time: np.ndarray
    card: np.ndarray
    terminal: np.ndarray
    amount: np.ndarray
    pattern: np.ndarray

    @classmethod
    def empty(cls) -> Columns:
        return cls(
            np.array([]), np.array([], int), np.array([], int), np.array([]), np.array([], int)
        )

    @classmethod
    def concat(cls, parts: list[Columns]) -> Columns:
        return cls(
            *(
                np.concatenate([getattr(p, f) for p in parts])
                for f in ("time", "card", "terminal", "amount", "pattern")
            )
        )

    def __len__(self) -> int:
        return len(self.time)


@dataclass(frozen=True)
class Incidents:
    """Start times of attacks and the card (or terminal) each one targets."""

    start: np.ndarray
    target: np.ndarray


Pattern = Callable[[Population, Columns, Incidents, np.random.Generator], Columns]


def compromised_terminal(
    pop: Population, legit: Columns, inc: Incidents, rng: np.random.Generator
) -> Columns:
    """Marks (in place) every legit transaction at the terminal during the incident.

    Parameters
    ----------
    pop
        The population (cards, customers and terminals).
    legit
        The genuine transactions: the pattern codes of those hit are set in place.
    inc
        The incidents: each one's start (epoch seconds) and target terminal.
    rng
        The simulation's random generator.
    """
    end = inc.start + rng.uniform(2, 5, len(inc.start)) * 86400
    code = PATTERNS.index("compromised_terminal")
    for terminal, s, e in zip(inc.target, inc.start, end, strict=True):
        hit = (legit.terminal == terminal) & (legit.time >= s) & (legit.time < e)
        legit.pattern[hit & (legit.pattern < 0)] = code
    return Columns.empty()


def stolen_card(
    pop: Population, legit: Columns, inc: Incidents, rng: np.random.Generator
) -> Columns:
    """2 to 6 payments over 3 days at random terminals, amounts about e times usual.

    Parameters
    ----------
    pop
        The population (cards, customers and terminals).
    legit
        The genuine transactions (not used by this pattern).
    inc
        The incidents: each one's start (epoch seconds) and target card.
    rng
        The simulation's random generator.
    """
    counts = rng.integers(2, 7, len(inc.start))
    card = np.repeat(inc.target, counts)
    time = np.repeat(inc.start, counts) + rng.uniform(0, 3 * 86400, counts.sum())
    terminal = rng.integers(0, len(pop.terminal_lat), counts.sum())
    return _columns(pop, card, time, terminal, 1.0, "stolen_card", rng)


def card_testing(
    pop: Population, legit: Columns, inc: Incidents, rng: np.random.Generator
) -> Columns:
    """3 to 8 tiny amounts within 10 minutes at an online terminal, then 1 to 3 large ones.

    Parameters
    ----------
    pop
        The population (cards, customers and terminals).
    legit
        The genuine transactions (not used by this pattern).
    inc
        The incidents: each one's start (epoch seconds) and target card.
    rng
        The simulation's random generator.
    """
    online = np.flatnonzero(pop.terminal_category == _ONLINE)
    online = online if len(online) else np.arange(len(pop.terminal_lat))
    tiny_n, big_n = rng.integers(3, 9, len(inc.start)), rng.integers(1, 4, len(inc.start))
    where = rng.choice(online, len(inc.start))
    tiny_card = np.repeat(inc.target, tiny_n)
    tiny = Columns(
        np.repeat(inc.start, tiny_n) + rng.uniform(0, 600, tiny_n.sum()),
        tiny_card,
        np.repeat(where, tiny_n),
        np.round(rng.uniform(0.5, 2.0, tiny_n.sum()), 2),
        np.full(tiny_n.sum(), PATTERNS.index("card_testing")),
    )
    big_card = np.repeat(inc.target, big_n)
    big_time = np.repeat(inc.start, big_n) + 600 + rng.uniform(0, 7200, big_n.sum())
    big = _columns(pop, big_card, big_time, np.repeat(where, big_n), 1.5, "card_testing", rng)
    return Columns.concat([tiny, big])


def account_takeover(
    pop: Population, legit: Columns, inc: Incidents, rng: np.random.Generator
) -> Columns:
    """2 to 6 payments within a day at a terminal far from home, amounts about 2x usual.

    Parameters
    ----------
    pop
        The population (cards, customers and terminals).
    legit
        The genuine transactions (not used by this pattern).
    inc
        The incidents: each one's start (epoch seconds) and target card.
    rng
        The simulation's random generator.
    """
    counts = rng.integers(2, 7, len(inc.start))
    customers = pop.card_customer[inc.target]
    far = []
    for c in customers:
        d = distance_km(
            pop.customer_lat[c], pop.customer_lon[c], pop.terminal_lat, pop.terminal_lon
        )
        far.append(rng.choice(np.argsort(d)[-max(1, len(d) // 10) :]))
    card = np.repeat(inc.target, counts)
    time = np.repeat(inc.start, counts) + rng.uniform(0, 86400, counts.sum())
    return _columns(
        pop, card, time, np.repeat(np.array(far, int), counts), 0.7, "account_takeover", rng
    )


def high_amount(
    pop: Population, legit: Columns, inc: Incidents, rng: np.random.Generator
) -> Columns:
    """One payment at a usual terminal, about 12x the usual amount.

    Parameters
    ----------
    pop
        The population (cards, customers and terminals).
    legit
        The genuine transactions (not used by this pattern).
    inc
        The incidents: each one's start (epoch seconds) and target card.
    rng
        The simulation's random generator.
    """
    terminal = _usual_terminals(pop, inc.target, rng)
    return _columns(pop, inc.target, inc.start, terminal, 2.5, "high_amount", rng)


def merchant_fraud(
    pop: Population, legit: Columns, inc: Incidents, rng: np.random.Generator
) -> Columns:
    """2 to 4 payments over 3 days at a usual terminal, at usual amounts and hours.

    Parameters
    ----------
    pop
        The population (cards, customers and terminals).
    legit
        The genuine transactions (not used by this pattern).
    inc
        The incidents: each one's start (epoch seconds) and target card.
    rng
        The simulation's random generator.
    """
    counts = rng.integers(2, 5, len(inc.start))
    card = np.repeat(inc.target, counts)
    customers = pop.card_customer[card]
    day = np.floor(np.repeat(inc.start, counts) / 86400) * 86400
    hours = np.mod(rng.normal(pop.peak_hour[customers], pop.hour_spread[customers]), 24)
    time = day + rng.integers(0, 3, counts.sum()) * 86400 + hours * 3600
    # At one of the card's usual terminals (a merchant it already pays), so that nothing
    # about the payment is new to the card: only that terminal's risk gives it away.
    terminal = np.repeat(_usual_terminals(pop, inc.target, rng), counts)
    return _columns(pop, card, time, terminal, 0.0, "merchant_fraud", rng)


GENERATORS: dict[str, Pattern] = {
    "compromised_terminal": compromised_terminal,
    "stolen_card": stolen_card,
    "card_testing": card_testing,
    "account_takeover": account_takeover,
    "high_amount": high_amount,
    "merchant_fraud": merchant_fraud,
}


def _usual_terminals(pop: Population, cards: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    customers = pop.card_customer[cards]
    start, stop = pop.nearby_start[customers], pop.nearby_start[customers + 1]
    return np.asarray(
        pop.nearby_terminals[start + (rng.random(len(cards)) * (stop - start)).astype(int)]
    )


def _columns(
    pop: Population,
    card: np.ndarray,
    time: np.ndarray,
    terminal: np.ndarray,
    log_boost: float,
    pattern: str,
    rng: np.random.Generator,
) -> Columns:
    customers = pop.card_customer[card]
    amount = rng.lognormal(pop.amount_mu[customers] + log_boost, pop.amount_sigma[customers])
    return Columns(
        time, card, terminal, np.round(amount, 2), np.full(len(card), PATTERNS.index(pattern))
    )
