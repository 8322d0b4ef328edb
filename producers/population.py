"""Customers, their cards, and terminals: who pays where.

Customers live at a home location in a rectangle of the map (by default
roughly France), each with a spending profile: the log-normal of their
amounts, how many transactions a day, and the hours they are active.
Terminals have a location and a merchant category. A customer pays at the
terminals within ``radius_km`` of home (the nearest few if none is that
close). Everything is drawn at once with numpy from the given generator.

Examples
--------
>>> import numpy as np
>>> pop = build_population(PopulationConfig(customers=50, terminals=40), np.random.default_rng(1))
>>> len(pop.card_customer) >= 50, pop.terminal_category.shape
(True, (40,))
>>> min(len(pop.nearby(c)) for c in range(50))  # terminals near each customer, at least
3
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Merchant categories and how common they are among terminals.
CATEGORIES: tuple[str, ...] = (
    "grocery",
    "fuel",
    "restaurant",
    "online",
    "travel",
    "electronics",
    "pharmacy",
    "fashion",
)
_CATEGORY_WEIGHTS = np.array([0.25, 0.1, 0.2, 0.15, 0.05, 0.05, 0.1, 0.1])
_KM_PER_DEGREE = 111.2


@dataclass(frozen=True)
class PopulationConfig:
    """How many of whom, and where."""

    customers: int = 2000
    terminals: int = 1000
    #: (south, north, west, east) in degrees.
    bounds: tuple[float, float, float, float] = (43.0, 51.0, -4.0, 8.0)
    radius_km: float = 30.0
    #: Share of customers with a second card.
    second_card_share: float = 0.3


@dataclass(frozen=True)
class Population:
    """Column arrays: customers (index = customer), cards, terminals."""

    customer_lat: np.ndarray
    customer_lon: np.ndarray
    #: log-normal parameters of the customer's amounts.
    amount_mu: np.ndarray
    amount_sigma: np.ndarray
    #: transactions per day, over all the customer's cards.
    rate_per_day: np.ndarray
    #: the hour of the day the customer is most active, and the spread (hours).
    peak_hour: np.ndarray
    hour_spread: np.ndarray
    #: card index -> customer index.
    card_customer: np.ndarray
    terminal_lat: np.ndarray
    terminal_lon: np.ndarray
    #: index into :data:`CATEGORIES`.
    terminal_category: np.ndarray
    #: customer c pays at ``nearby_terminals[nearby_start[c]:nearby_start[c + 1]]``.
    nearby_start: np.ndarray
    nearby_terminals: np.ndarray

    def nearby(self, customer: int) -> np.ndarray:
        return self.nearby_terminals[self.nearby_start[customer] : self.nearby_start[customer + 1]]

    @property
    def cards_per_customer(self) -> np.ndarray:
        return np.bincount(self.card_customer, minlength=len(self.customer_lat))

    def region_north(self) -> np.ndarray:
        """Per customer: whether home is in the northern half of the map."""
        return np.asarray(self.customer_lat > np.median(self.customer_lat))


def build_population(config: PopulationConfig, rng: np.random.Generator) -> Population:
    """Draw a population.

    Parameters
    ----------
    config
        How many customers and terminals, where, and how far customers travel to pay.
    rng
        The random generator everything is drawn from.
    """
    south, north, west, east = config.bounds
    n, m = config.customers, config.terminals
    lat, lon = rng.uniform(south, north, n), rng.uniform(west, east, n)
    t_lat, t_lon = rng.uniform(south, north, m), rng.uniform(west, east, m)
    second = rng.random(n) < config.second_card_share
    card_customer = np.concatenate([np.arange(n), np.flatnonzero(second)])
    card_customer.sort(kind="stable")
    starts, terminals = _nearby(lat, lon, t_lat, t_lon, config.radius_km)
    return Population(
        customer_lat=lat,
        customer_lon=lon,
        amount_mu=rng.uniform(2.5, 4.5, n),
        amount_sigma=rng.uniform(0.4, 0.9, n),
        rate_per_day=rng.uniform(0.5, 4.0, n),
        peak_hour=np.clip(rng.normal(14.0, 3.0, n), 8.0, 21.0),
        hour_spread=rng.uniform(2.0, 4.0, n),
        card_customer=card_customer,
        terminal_lat=t_lat,
        terminal_lon=t_lon,
        terminal_category=rng.choice(len(CATEGORIES), m, p=_CATEGORY_WEIGHTS),
        nearby_start=starts,
        nearby_terminals=terminals,
    )


def distance_km(
    lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray
) -> np.ndarray:
    """Equirectangular distance in km: plenty for choosing terminals near home.

    Parameters
    ----------
    lat1, lon1
        The first points, in degrees (broadcast against the second).
    lat2, lon2
        The second points, in degrees.
    """
    x = (lon2 - lon1) * np.cos(np.radians((lat1 + lat2) / 2))
    return np.asarray(_KM_PER_DEGREE * np.hypot(x, lat2 - lat1))


def _nearby(
    lat: np.ndarray,
    lon: np.ndarray,
    t_lat: np.ndarray,
    t_lon: np.ndarray,
    radius_km: float,
    at_least: int = 3,
) -> tuple[np.ndarray, np.ndarray]:
    """Per customer, the terminals within ``radius_km`` (the nearest ``at_least`` if fewer),
    as CSR arrays; found through a grid of radius-sized cells, not all pairs."""
    n = len(lat)
    step_lat = radius_km / _KM_PER_DEGREE
    step_lon = step_lat / max(np.cos(np.radians(np.mean(lat) if n else 0.0)), 0.1)
    t_key = _cell(t_lat, t_lon, step_lat, step_lon)
    order = np.argsort(t_key, kind="stable")
    sorted_key = t_key[order]
    row, col = np.floor(lat / step_lat).astype(np.int64), np.floor(lon / step_lon).astype(np.int64)
    customers, terminals = [], []
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            key = (row + dy) * _GRID + (col + dx)
            lo, hi = np.searchsorted(sorted_key, key), np.searchsorted(sorted_key, key, "right")
            count = hi - lo
            offsets = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
            customers.append(np.repeat(np.arange(n), count))
            terminals.append(order[np.repeat(lo, count) + offsets])
    who, where = np.concatenate(customers), np.concatenate(terminals)
    inside = distance_km(lat[who], lon[who], t_lat[where], t_lon[where]) <= radius_km
    who, where = who[inside], where[inside]
    few = np.flatnonzero(np.bincount(who, minlength=n) < at_least)
    if len(few):  # sparse places: the nearest few, whatever the distance
        keep = ~np.isin(who, few)
        d = distance_km(lat[few, None], lon[few, None], t_lat[None, :], t_lon[None, :])
        nearest = np.argpartition(d, min(at_least, len(t_lat)) - 1, axis=1)[:, :at_least]
        who = np.concatenate([who[keep], np.repeat(few, nearest.shape[1])])
        where = np.concatenate([where[keep], nearest.ravel()])
    pairs = np.lexsort((where, who))
    who, where = who[pairs], where[pairs]
    starts = np.concatenate([[0], np.cumsum(np.bincount(who, minlength=n))])
    return starts, where


_GRID = 1 << 21


def _cell(lat: np.ndarray, lon: np.ndarray, step_lat: float, step_lon: float) -> np.ndarray:
    return np.asarray(
        np.floor(lat / step_lat).astype(np.int64) * _GRID
        + np.floor(lon / step_lon).astype(np.int64)
    )
