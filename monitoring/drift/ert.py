"""Thresholds set by an expected run-time between false alarms (ERT), by simulation.

A sequential detector's threshold is a trade: lower, it sees a change sooner
and pages more often on steady data. Set by hand it says nothing about how
often it will page. As alibi-detect does for its online detectors, the
threshold here is *derived* from the time an operator accepts between false
alarms: the detector is run on many streams simulated from its reference
(steady data by definition) and the threshold is the level its statistic
reaches, in that time, as often as a false alarm should.

The run length of a detector on steady data is close to exponential (it
forgets; each stretch of time is a fresh chance to cross). With an ERT of
``E`` days, the chance that a run of ``H`` days stays quiet is
``exp(-H / E)``: the threshold is that quantile of the largest statistic
reached in each simulated run of ``H`` days. Shorter runs cost less to
simulate; the quantile moves up to match.

The reference is resampled in blocks of consecutive observations (an hour by
default), not one by one: frauds come in bursts, and a bootstrap of single
labels would make steady data look calmer than it is, and the threshold too
low.

Examples
--------
The Page-Hinkley statistic as River computes it, for a whole stream at once:

>>> import numpy as np
>>> from river import drift
>>> x = np.random.default_rng(0).exponential(1.0, 500)
>>> ph = drift.PageHinkley(threshold=1e9, mode="up", delta=0.005)
>>> river_stat = []
>>> for value in x:
...     ph.update(value)
...     river_stat.append(ph._sum_increase - ph._min_increase)
>>> ours = page_hinkley_statistic(x, delta=0.005, alpha=1 - 0.0001)
>>> bool(np.allclose(ours, river_stat))
True

The quantile a run of ``H`` days must stay under, for an ERT of ``E`` days:

>>> round(quiet_quantile(horizon_days=30, ert_days=30), 3)
0.368
>>> round(quiet_quantile(horizon_days=10, ert_days=90), 3)
0.895
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import cast

import numpy as np
from scipy.signal import lfilter

DAY = 86400.0


def page_hinkley_statistic(x: np.ndarray, delta: float, alpha: float) -> np.ndarray:
    """River's ``PageHinkley`` "up" statistic after each value of ``x`` (from a fresh start).

    The running mean includes the current value; the cumulative sum fades by
    ``alpha`` each step; the statistic is the sum minus its smallest value so far.

    Parameters
    ----------
    x
        The observed values (e.g. log losses), in order.
    delta
        The tolerance subtracted from each value's deviation from the running mean
        (River's ``delta``).
    alpha
        The factor the cumulative sum fades by at each step (River's ``alpha``; 1: none).
    """
    x = np.asarray(x, dtype=np.float64)
    mean = np.cumsum(x) / np.arange(1, len(x) + 1)
    steps = x - mean - delta
    sums = lfilter([1.0], [1.0, -alpha], steps)
    return cast(np.ndarray, sums - np.minimum.accumulate(sums))


def quiet_quantile(horizon_days: float, ert_days: float) -> float:
    """The share of simulated runs of ``horizon_days`` that should see no false alarm.

    Parameters
    ----------
    horizon_days
        The length of a simulated run, in days of event time.
    ert_days
        The expected run-time between false alarms, in days.
    """
    return math.exp(-horizon_days / ert_days)


def blocks(
    values: Sequence[float] | np.ndarray, times: Sequence[float] | np.ndarray, block_seconds: float
) -> list[np.ndarray]:
    """``values`` cut into runs of consecutive observations, one per ``block_seconds``.

    Parameters
    ----------
    values
        The observations.
    times
        Their event times (seconds), in any order: the blocks are in event-time order.
    block_seconds
        The length of a block: observations in the same slot of this many seconds of event
        time form one (empty slots form none).
    """
    order = np.argsort(np.asarray(times, dtype=np.float64), kind="stable")
    ordered = np.asarray(values, dtype=np.float64)[order]
    slots = np.floor(np.asarray(times, dtype=np.float64)[order] / block_seconds)
    cuts = np.flatnonzero(np.diff(slots)) + 1
    return [part for part in np.split(ordered, cuts) if len(part)]


def block_bootstrap(
    parts: Sequence[np.ndarray], length: int, rng: np.random.Generator
) -> np.ndarray:
    """A stream of ``length`` values: whole blocks drawn with replacement, joined.

    Parameters
    ----------
    parts
        The blocks to draw from (:func:`blocks`), at least one, none empty.
    length
        The number of values in the stream (the last block drawn is cut).
    rng
        The generator that draws the blocks.
    """
    sizes = np.array([len(p) for p in parts])
    draws = rng.integers(0, len(parts), size=max(1, int(length / sizes.mean() * 1.5) + 1))
    while sizes[draws].sum() < length:  # rarely: the first guess fell short
        draws = np.concatenate([draws, rng.integers(0, len(parts), size=len(draws))])
    return np.concatenate([parts[i] for i in draws])[:length]


#: A bootstrap from fewer blocks would repeat the reference rather than resample it.
MIN_BLOCKS = 20
#: At most this many values simulated per run: at high rates the horizon shrinks
#: (and the quantile rises with it), so a calibration takes a second or two.
MAX_RUN_LENGTH = 100_000


def page_hinkley_threshold(
    values: Sequence[float],
    times: Sequence[float],
    ert_days: float,
    delta: float,
    alpha: float,
    min_instances: int = 30,
    horizon_days: float = 30.0,
    runs: int = 200,
    block_seconds: float = 3600.0,
    seed: int = 0,
) -> float:
    """The Page-Hinkley threshold whose expected run-time on data like ``values`` (with
    their event ``times``) is ``ert_days``.

    Simulates ``runs`` streams of ``horizon_days`` (at the reference's rate; fewer
    days if that is more than ``MAX_RUN_LENGTH`` values) by block bootstrap and
    takes the :func:`quiet_quantile` of their largest statistic.

    Parameters
    ----------
    values
        The reference's values (the losses Page-Hinkley will watch).
    times
        Their event times (seconds); they must span some time.
    ert_days
        The expected run-time between false alarms to reach, in days.
    delta, alpha
        Page-Hinkley's tolerance and fading factor (see :func:`page_hinkley_statistic`).
    min_instances
        Page-Hinkley alarms from this many values on: the statistic before is ignored.
    horizon_days
        The longest simulated run, in days (shortened to ``ert_days`` and to
        ``MAX_RUN_LENGTH`` values).
    runs
        The number of simulated runs.
    block_seconds
        The length of a resampled block in seconds of event time (at most the reference's
        span over ``MIN_BLOCKS``).
    seed
        Seeds the bootstrap, so a calibration is repeatable.
    """
    span = (max(times) - min(times)) / DAY
    if span <= 0 or len(values) < 2:
        raise ValueError("times: the reference must span some event time")
    per_day = len(values) / span
    horizon = min(horizon_days, ert_days, MAX_RUN_LENGTH / per_day)
    length = max(min_instances + 1, int(per_day * horizon))
    # blocks of an hour, but at least MIN_BLOCKS of them (a short reference)
    parts = blocks(values, times, min(block_seconds, span * DAY / MIN_BLOCKS))
    rng = np.random.default_rng(seed)
    largest = np.empty(runs)
    for run in range(runs):
        stat = page_hinkley_statistic(block_bootstrap(parts, length, rng), delta, alpha)
        largest[run] = stat[min_instances - 1 :].max(initial=0.0)
    return float(np.quantile(largest, quiet_quantile(horizon, ert_days)))
