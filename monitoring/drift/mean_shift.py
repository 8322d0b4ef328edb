"""A shift in a feature's mean: a two-sided CUSUM on the means of blocks of transactions.

PSI and KS compare a window's whole distribution with the reference's. A
change that moves every value a little (amounts growing by a few percent a
day, or a growing share of them doubling) moves those statistics little,
because a feature like the amount varies far more between cardholders than
the change moves it. Measured against each card's own history
(``card_amount_zscore_30d``: the amount in standard deviations from the
card's 30-day mean) that spread is gone, and the day's mean of the feature
is steady to about 0.03 of a standard deviation. A CUSUM on that mean sees
a change of a tenth of a standard deviation within a day or two.

:class:`MeanShift` cuts the stream into blocks of ``mean_shift_block``
transactions and takes each block's mean of the feature (values clipped to
``±mean_shift_clip``: one card with a tiny spread must not move a block).
The blocks of the first ``reference_days`` (and at least
:data:`MIN_REFERENCE_BLOCKS` of them) are the reference: their mean ``mu``
and standard deviation ``sigma``. After it, each block adds
``z = (mean - mu) / (sigma * sqrt(phi)) - k`` to the upper sum and
``-z - k`` to the lower one, each floored at 0 and capped at twice the
threshold (so that the sum comes back within days once a change is over);
``k`` is ``mean_shift_k``, half the shift, in standard deviations, the test
is tuned to. ``phi`` (at least 1) is how much more the reference's daily
means vary than its blocks predict: days differ from each other by more
than sampling, and a bootstrap of one week's blocks cannot see it.

The threshold comes from the expected run-time between false alarms
(:mod:`monitoring.drift.ert`): ``ert_days * ert_detectors`` shared by the watched
features, simulated on runs of the reference's own standardised blocks,
unless ``mean_shift_threshold`` sets it by hand. An alarm is raised once per
episode: the sum must come back to 0 before the feature can alarm again. Its
change time is when the alarming sum last left 0 (CUSUM's own estimate of
when the shift began); its value is the mean's shift since then, in the
feature's units.

The feature does not depend on the model: the reference is kept until
:meth:`MeanShift.refresh`.

Examples
--------
A standard normal feature whose mean moves by a quarter of a standard deviation
after transaction 6,000 (blocks of 10, so 100 blocks a day; the shift is 0.8 of a
block mean's spread), with a day of reference:

>>> import numpy as np
>>> rng = np.random.default_rng(1)
>>> config = DriftConfig(reference_days=1, mean_shift_block=10, ert_runs=50)
>>> detector = MeanShift(config, ["x"])
>>> events = []
>>> for i in range(10_000):
...     value = rng.normal(0.25 if i >= 6_000 else 0.0, 1.0)
...     events += detector.update(TxnObservation(i * 86.4, {"x": value}))
>>> [(e.detector, e.subject) for e in events]
[('mean_shift', 'x')]
>>> round(detector.threshold("x"), 1)
9.2
>>> round(events[0].first_seen / 86400 - 6, 2)  # days after the change it was seen
0.12
>>> round(events[0].magnitude, 2)  # the mean's shift since the CUSUM left 0 (true: 0.25)
0.32
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from monitoring.drift import ert
from monitoring.drift.base import DriftEvent, TxnObservation
from monitoring.drift.config import DriftConfig

DAY = 86400.0
#: The fewest reference blocks a standard deviation (and a bootstrap) is taken from.
MIN_REFERENCE_BLOCKS = 20


def cusum_statistic(z: np.ndarray, k: float, cap: float = math.inf) -> np.ndarray:
    """The two-sided CUSUM after each standardised value of ``z``: ``max(upper, lower)``,
    each sum floored at 0 and capped at ``cap``.

    Parameters
    ----------
    z
        The standardised values (block means), in order.
    k
        The allowance each step subtracts, in standard deviations: half the shift the test
        is tuned to.
    cap
        The ceiling of each sum (infinite: none).

    Examples
    --------
    >>> cusum_statistic(np.array([1.0, 2.0, -3.0, 0.0]), k=0.5).tolist()
    [0.5, 2.0, 2.5, 2.0]
    """
    upper = lower = 0.0
    out = np.empty(len(z))
    for i, value in enumerate(z.tolist()):
        upper = min(cap, max(0.0, upper + value - k))
        lower = min(cap, max(0.0, lower - value - k))
        out[i] = max(upper, lower)
    return out


def cusum_threshold(
    z: np.ndarray,
    times: np.ndarray,
    ert_days: float,
    k: float,
    runs: int = 200,
    horizon_days: float = 30.0,
    block_seconds: float = 3600.0,
    seed: int = 0,
) -> float:
    """The two-sided CUSUM threshold whose expected run-time on blocks like ``z`` (with
    their event ``times``) is ``ert_days``: the :func:`~monitoring.drift.ert.quiet_quantile`
    of the largest statistic of ``runs`` simulated runs of ``horizon_days``, each made
    of runs of consecutive reference blocks drawn at random.

    Parameters
    ----------
    z
        The reference's standardised block means.
    times
        Their event times (seconds); they must span some time.
    ert_days
        The expected run-time between false alarms to reach, in days.
    k
        The CUSUM's allowance (see :func:`cusum_statistic`).
    runs
        The number of simulated runs.
    horizon_days
        The longest simulated run, in days (shortened to ``ert_days`` and to
        :data:`~monitoring.drift.ert.MAX_RUN_LENGTH` blocks).
    block_seconds
        The event time (seconds) of each run of consecutive blocks drawn (at most the
        reference's span over :data:`~monitoring.drift.ert.MIN_BLOCKS`).
    seed
        Seeds the bootstrap, so a calibration is repeatable.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> z, times = rng.normal(size=700), np.arange(700) * 864.0  # 100 a day, a week
    >>> round(cusum_threshold(z, times, ert_days=30, k=0.5, runs=100), 1)
    6.9
    """
    span = (float(times.max()) - float(times.min())) / DAY
    if span <= 0 or len(z) < 2:
        raise ValueError("times: the reference must span some event time")
    per_day = len(z) / span
    horizon = min(horizon_days, ert_days, ert.MAX_RUN_LENGTH / per_day)
    length = max(2, int(per_day * horizon))
    parts = ert.blocks(z, times, min(block_seconds, span * DAY / ert.MIN_BLOCKS))
    rng = np.random.default_rng(seed)
    largest = [
        cusum_statistic(ert.block_bootstrap(parts, length, rng), k).max() for _ in range(runs)
    ]
    return float(np.quantile(largest, ert.quiet_quantile(horizon, ert_days)))


@dataclass
class _Side:
    """One side of the CUSUM: its sum, when it last left 0 and the block means since (for
    the event's value)."""

    cusum: float = 0.0
    began: float = 0.0
    total: float = 0.0
    blocks: int = 0

    def step(self, value: float, mean: float, at: float, cap: float) -> None:
        """Add ``value`` (floored at 0, capped at ``cap``) for a block of ``mean``."""
        if self.cusum == 0.0:
            self.began, self.total, self.blocks = at, 0.0, 0
        self.cusum = min(cap, max(0.0, self.cusum + value))
        self.total += mean
        self.blocks += 1


@dataclass
class _Feature:
    """One feature's blocks, reference and sums."""

    block_sum: float = 0.0
    block_count: int = 0
    #: Reference block means and their end times, until it is complete ...
    reference: list[tuple[float, float]] = field(default_factory=list)
    #: ... then its mean, standard deviation (inflated by the days' dispersion) and threshold.
    mu: float = 0.0
    sigma: float = 0.0
    threshold: float = 0.0
    calibrated: bool = False
    upper: _Side = field(default_factory=_Side)
    lower: _Side = field(default_factory=_Side)
    active: bool = False


class MeanShift:
    """A two-sided CUSUM on the block means of each of ``features``.

    Parameters
    ----------
    config
        The settings: ``mean_shift_block``, ``mean_shift_clip``, ``mean_shift_k``,
        ``mean_shift_threshold`` (0: derived), ``reference_days`` and the ERT settings.
    features
        The names of the vector's features to watch; they share the ERT's false alarms.
    """

    def __init__(self, config: DriftConfig, features: Iterable[str]) -> None:
        self.config = config
        self.features = list(features)
        self._state = {name: _Feature() for name in self.features}
        #: Blocks completed so far, all features together (the gauges move when this does).
        self.blocks = 0
        #: The latest statistic per feature: the larger sum over its threshold (1 alarms; 0
        #: from a refresh until the new reference).
        self.latest: dict[str, float] = {}

    def alarm_keys(self) -> list[tuple[str, str]]:
        """Every (detector, subject) this can raise."""
        return [("mean_shift", name) for name in self.features]

    def threshold(self, feature: str) -> float:
        """``feature``'s threshold (0 until its reference is complete)."""
        return self._state[feature].threshold

    def update(self, observation: TxnObservation) -> list[DriftEvent]:
        """A scored transaction (its vector)."""
        at, vector = observation.at, observation.vector
        clip = self.config.mean_shift_clip
        events = []
        for name in self.features:
            state = self._state[name]
            value = vector.get(name)
            if value is None or math.isnan(value):
                continue
            state.block_sum += min(clip, max(-clip, value))
            state.block_count += 1
            if state.block_count < self.config.mean_shift_block:
                continue
            mean = state.block_sum / state.block_count
            state.block_sum, state.block_count = 0.0, 0
            self.blocks += 1
            if not state.calibrated:
                state.reference.append((mean, at))
                self._calibrate_if_complete(name, state)
                continue
            event = self._step(name, state, mean, at)
            if event is not None:
                events.append(event)
        return events

    def _calibrate_if_complete(self, name: str, state: _Feature) -> None:
        config = self.config
        means = np.array([m for m, _ in state.reference])
        times = np.array([t for _, t in state.reference])
        if len(means) < MIN_REFERENCE_BLOCKS or times[-1] - times[0] < config.reference_days * DAY:
            return
        mu, sigma = float(means.mean()), float(means.std(ddof=1))
        sigma = max(sigma, 1e-9)
        z = (means - mu) / sigma
        state.mu, state.sigma = mu, sigma * math.sqrt(_day_dispersion(z, times))
        state.threshold = config.mean_shift_threshold or cusum_threshold(
            z,
            times,
            config.ert_days * config.ert_detectors / max(1, len(self.features)),
            config.mean_shift_k,
            runs=config.ert_runs,
            block_seconds=config.ert_block_hours * 3600,
        )
        state.calibrated = True
        state.reference = []
        self.latest[name] = 0.0

    def _step(self, name: str, state: _Feature, mean: float, at: float) -> DriftEvent | None:
        k, cap = self.config.mean_shift_k, 2 * state.threshold
        z = (mean - state.mu) / state.sigma
        upper, lower = state.upper, state.lower
        upper.step(z - k, mean, at, cap)
        lower.step(-z - k, mean, at, cap)
        top = max(upper, lower, key=lambda side: side.cusum)
        self.latest[name] = top.cusum / state.threshold
        if top.cusum == 0.0:
            state.active = False
        if state.active or top.cusum <= state.threshold:
            return None
        state.active = True
        return DriftEvent(
            "mean_shift",
            name,
            top.total / top.blocks - state.mu,
            top.blocks * self.config.mean_shift_block,
            top.began,
            at,
        )

    def refresh(self) -> None:
        """Take a new reference from the next blocks."""
        self._state = {name: _Feature() for name in self.features}
        self.latest = dict.fromkeys(self.features, 0.0)  # no statistic until the new reference


def _day_dispersion(z: np.ndarray, times: np.ndarray) -> float:
    """How much more the daily means of standardised blocks ``z`` vary than blocks drawn
    independently would (at least 1).

    >>> rng = np.random.default_rng(0)
    >>> times = np.arange(700) * 864.0  # 100 blocks a day for a week
    >>> round(_day_dispersion(rng.normal(size=700), times), 1)
    1.0
    >>> days = np.repeat(rng.normal(0, 0.3, 7), 100)  # each day moved (about 1 + 100 * 0.3 ** 2)
    >>> round(_day_dispersion(rng.normal(size=700) + days, times), 1)
    17.9
    """
    day = np.floor(times / DAY)
    days, counts = np.unique(day, return_counts=True)
    if len(days) < 2:
        return 1.0
    means = np.array([z[day == d].mean() for d in days])
    centre = float(np.average(means, weights=counts))
    chi2 = float(np.sum(counts * (means - centre) ** 2)) / max(float(np.var(z, ddof=1)), 1e-12)
    return max(1.0, chi2 / (len(days) - 1))
