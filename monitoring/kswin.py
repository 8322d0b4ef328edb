"""River's KSWIN, with its KS test paid for only when it could alarm.

River's :class:`~river.drift.KSWIN` runs ``scipy.stats.ks_2samp`` (exact
p-value) at every update once its window is full: about 240 us for two
samples of 288. It alarms only when the p-value is at most ``alpha`` **and**
the statistic is above 0.1. :class:`QuickKSWIN` draws the same random
sample from the same generator, computes the statistic with numpy (about
30 us), and runs the exact test only when the statistic is above 0.1; below,
no alarm is possible and ``p_value`` is the asymptotic (Kolmogorov) value,
kept for the gauge. Alarms, window and random stream are River's.

Examples
--------
>>> import random
>>> from river import drift
>>> rnd = random.Random(3)
>>> values = [rnd.gauss(0, 1) for _ in range(600)] + [rnd.gauss(2, 1) for _ in range(200)]
>>> quick, river = QuickKSWIN(window_size=300, stat_size=60, seed=1), drift.KSWIN(
...     window_size=300, stat_size=60, seed=1)
>>> alarms = []
>>> for i, x in enumerate(values):
...     _ = quick.update(x), river.update(x)
...     assert quick.drift_detected == river.drift_detected
...     alarms += [i] if quick.drift_detected else []
>>> alarms[0] > 600
True
"""

from __future__ import annotations

import collections
import itertools
import math
import warnings

import numpy as np
from river import drift
from scipy import special, stats

#: KSWIN alarms only above this statistic (River's rule).
MIN_STATISTIC = 0.1


def ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """The two-sample KS statistic: the largest gap between the two distribution
    functions over the pooled values.

    >>> ks_statistic(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0]))
    0.0
    >>> ks_statistic(np.array([1.0, 2.0]), np.array([3.0, 4.0]))
    1.0
    """
    a, b = np.sort(a), np.sort(b)
    pooled = np.concatenate([a, b])
    gaps = (np.searchsorted(a, pooled, "right") / len(a)
            - np.searchsorted(b, pooled, "right") / len(b))
    return float(np.max(np.abs(gaps)))


class QuickKSWIN(drift.KSWIN):
    """:class:`river.drift.KSWIN` with the exact test only where it could alarm."""

    def update(self, x: float) -> None:
        if self.drift_detected:
            self._reset()
        self.n += 1
        self.window.append(x)
        if len(self.window) < self.window_size:
            self._drift_detected = False
            return
        older = [self.window[r] for r in
                 self._rng.sample(range(self.window_size - self.stat_size), self.stat_size)]
        newest = list(itertools.islice(self.window, self.window_size - self.stat_size,
                                       self.window_size))
        statistic = ks_statistic(np.array(older), np.array(newest))
        if statistic > MIN_STATISTIC:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", category=RuntimeWarning)
                statistic, self.p_value = stats.ks_2samp(older, newest, method="auto")
        else:  # no alarm possible: the asymptotic p-value, for the gauge
            self.p_value = float(special.kolmogorov(  # type: ignore[assignment]
                statistic * math.sqrt(len(older) * len(newest) / (len(older) + len(newest)))))
        if self.p_value <= self.alpha and statistic > MIN_STATISTIC:
            self._drift_detected = True
            self.window = collections.deque(newest, maxlen=self.window_size)
        else:
            self._drift_detected = False
