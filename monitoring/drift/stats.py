"""The statistics the detectors compute: PSI and KS against a reference, calendar weights,
a proportion's confidence bound, and the over-dispersion of clustered events.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Reference:
    """What PSI and KS need of a reference sample: computed once, while it stays frozen.

    PSI uses ``bins`` quantile bins of the reference; KS is the largest gap
    between the two distribution functions.

    >>> x = np.arange(1000.0)
    >>> Reference.of(x).psi(x) == 0.0, Reference.of(x).psi(x + 500) > 1
    (True, True)
    >>> two = Reference.of([1.0, 2.0])
    >>> two.ks(np.array([1.0, 2.0])), two.ks(np.array([5.0, 6.0]))
    (0.0, 1.0)

    With ``weights`` each reference value counts that much (see
    :func:`calendar_weights`): the PSI bins are weighted quantiles, the KS
    statistic uses the weighted distribution function.
    """

    values: np.ndarray
    #: Inner quantile edges of the PSI bins, and each bin's share (floored at 1e-4).
    edges: np.ndarray
    expected: np.ndarray
    #: With weights: the reference's distribution function after each sorted value.
    cdf: np.ndarray | None = None

    @classmethod
    def of(
        cls,
        reference: np.ndarray | Sequence[float],
        bins: int = 10,
        weights: np.ndarray | None = None,
    ) -> Reference:
        """The reference of the sample ``reference``.

        Parameters
        ----------
        reference
            The reference sample, in any order.
        bins
            The number of PSI bins (quantiles of the reference; tied edges merge).
        weights
            Each value's weight, in the order of ``reference`` (None: all alike).
        """
        values = np.asarray(reference, dtype=float)
        if weights is not None:
            order = np.argsort(values, kind="stable")
            return cls.weighted(values[order], np.asarray(weights, dtype=float)[order], bins)
        values = np.sort(values)
        edges = np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1]))
        counts = np.bincount(np.searchsorted(edges, values, "right"), minlength=len(edges) + 1)
        return cls(values, edges, np.maximum(counts / len(values), 1e-4))

    @classmethod
    def weighted(cls, values: np.ndarray, weights: np.ndarray, bins: int = 10) -> Reference:
        """The reference of sorted ``values`` weighted by ``weights``.

        Parameters
        ----------
        values
            The reference sample, sorted ascending.
        weights
            Each value's weight, in the order of ``values`` (at least one positive).
        bins
            The number of PSI bins (weighted quantiles; tied edges merge).

        Examples
        --------
        >>> r = Reference.weighted(np.array([1.0, 2.0, 3.0, 4.0]), np.array([0, 0, 1.0, 1.0]))
        >>> r.ks(np.array([3.0, 4.0])), r.psi(np.array([3.0, 4.0])) < 1e-9
        (0.0, True)
        """
        share = weights / weights.sum()
        cdf = np.cumsum(share)
        quantiles = np.linspace(0, 1, bins + 1)[1:-1]
        at = np.minimum(np.searchsorted(cdf, quantiles - 1e-12, "left"), len(values) - 1)
        edges = np.unique(values[at])
        counts = np.bincount(
            np.searchsorted(edges, values, "right"), weights=share, minlength=len(edges) + 1
        )
        return cls(values, edges, np.maximum(counts, 1e-4), np.concatenate([[0.0], cdf]))

    def psi(self, current: np.ndarray) -> float:
        actual = np.bincount(
            np.searchsorted(self.edges, current, "right"), minlength=len(self.edges) + 1
        )
        a = np.maximum(actual / len(current), 1e-4)
        return float(np.sum((a - self.expected) * np.log(a / self.expected)))

    def ks(self, current: np.ndarray) -> float:
        both = np.concatenate([self.values, current])
        at = np.searchsorted(self.values, both, "right")
        ref_cdf = at / len(self.values) if self.cdf is None else self.cdf[at]
        cur_cdf = np.searchsorted(np.sort(current), both, "right") / len(current)
        return float(np.max(np.abs(ref_cdf - cur_cdf)))


def weekday(event_time: float | np.ndarray) -> np.ndarray:
    """The UTC day of week (Monday = 0) of event times.

    >>> int(weekday(0.0))  # 1970-01-01 was a Thursday
    3
    """
    return np.asarray((np.floor_divide(event_time, 86400.0) + 3) % 7, dtype=np.int64)


def calendar_slot(event_time: float | np.ndarray) -> np.ndarray:
    """The UTC weekday and hour of event times, as ``24 * weekday + hour``.

    >>> int(calendar_slot(0.0)), int(calendar_slot(86400.0 * 4 + 3600 * 5 + 1))
    (72, 5)
    """
    hour = np.floor_divide(np.mod(event_time, 86400.0), 3600.0).astype(np.int64)
    return np.asarray(weekday(event_time) * 24 + hour, dtype=np.int64)


def _ratios(reference: np.ndarray, current: np.ndarray, bins: int) -> np.ndarray | None:
    ref_share = np.bincount(reference, minlength=bins) / len(reference)
    cur_share = np.bincount(current, minlength=bins) / len(current)
    if np.any((cur_share > 0) & (ref_share == 0)):
        return None
    return np.divide(cur_share, ref_share, out=np.zeros(bins), where=ref_share > 0)


def calendar_weights(
    reference_slots: np.ndarray,
    current_slots: np.ndarray,
) -> np.ndarray | None:
    """Weights that give the reference the current window's weekday and hour mix.

    Traffic has a weekly and a daily cycle, so a window of a Saturday, or of
    an afternoon, compared with a whole week would report "Saturday" or
    "afternoon" (at high traffic a window of a few thousand transactions
    covers only part of a day). Each reference value is weighted by its
    weekday's share of the current window over its share of the reference,
    times the same ratio for its hour of day. None (compare unweighted) when
    the current window has a weekday or an hour the reference lacks.

    Parameters
    ----------
    reference_slots
        The :func:`calendar_slot` of each reference value.
    current_slots
        The :func:`calendar_slot` of each observation of the current window.

    Examples
    --------
    >>> monday_9, tuesday_9, tuesday_10 = 9, 24 + 9, 24 + 10
    >>> calendar_weights(np.array([monday_9, monday_9, tuesday_9, tuesday_10]),
    ...                  np.array([tuesday_9, tuesday_9]))
    array([0.        , 0.        , 2.66666667, 0.        ])
    """
    days = _ratios(reference_slots // 24, current_slots // 24, 7)
    hours = _ratios(reference_slots % 24, current_slots % 24, 24)
    if days is None or hours is None:
        return None
    return np.asarray(days[reference_slots // 24] * hours[reference_slots % 24], dtype=float)


def wilson_lower(successes: float, trials: int, z: float) -> float:
    """The lower end of the Wilson score interval of a proportion.

    Parameters
    ----------
    successes
        The successes counted (fractional for an effective, quasi-binomial count).
    trials
        The trials counted (0: the bound is 0).
    z
        The standard normal quantile of the confidence (3.09: one-sided 99.9%).

    Examples
    --------
    >>> round(wilson_lower(10, 1000, 2.33), 4), wilson_lower(0, 1000, 2.33)
    (0.0049, 0.0)
    """
    if trials == 0:
        return 0.0
    p = successes / trials
    centre = p + z * z / (2 * trials)
    spread = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials))
    return max(0.0, (centre - spread) / (1 + z * z / trials))


def dispersion(flags: Sequence[float], block: int) -> float:
    """How much more a rate varies between blocks of ``block`` observations than
    independent draws would (Pearson chi-square over degrees of freedom, at least 1).

    Frauds come in incidents (a stolen card is used several times, a skimmed
    terminal hits many cards), so fraud labels cluster and a window's fraud
    count varies more than a binomial one. Dividing the counts by this factor
    gives the quasi-binomial effective sample.

    Parameters
    ----------
    flags
        The observations in order, each 1.0 (e.g. fraud) or 0.0; a tail short of a whole
        block is left out.
    block
        Observations per block (fewer than two blocks, or a rate of 0 or 1: the factor is 1).

    Examples
    --------
    >>> dispersion([0.0, 1.0] * 500, 100)
    1.0
    >>> clustered = ([1.0] * 20 + [0.0] * 980) + [0.0] * 1000
    >>> round(dispersion(clustered, 100), 1)
    20.2
    """
    values = np.asarray(flags, dtype=float)
    blocks = len(values) // block
    if blocks < 2:
        return 1.0
    counts = values[: blocks * block].reshape(blocks, block).sum(axis=1)
    p = float(np.mean(values[: blocks * block]))
    if p <= 0.0 or p >= 1.0:
        return 1.0
    chi2 = float(np.sum((counts - block * p) ** 2)) / (block * p * (1 - p))
    return max(1.0, chi2 / (blocks - 1))
