"""River's KSWIN per feature on sampled transactions, with its KS test paid for only when it
could alarm.

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
>>> alarms  # the change came at value 600
[614]
"""

from __future__ import annotations

import collections
import itertools
import math
import warnings
import zlib
from collections import deque
from collections.abc import Iterable

import numpy as np
from river import drift
from scipy import special, stats

from monitoring.drift.base import DriftEvent, TxnObservation
from monitoring.drift.config import DriftConfig
from monitoring.drift.stats import Reference

#: KSWIN alarms only above this statistic (River's rule).
MIN_STATISTIC = 0.1


def ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """The two-sample KS statistic: the largest gap between the two distribution
    functions over the pooled values.

    Parameters
    ----------
    a, b
        The two samples, in any order, neither empty.

    Examples
    --------
    >>> ks_statistic(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0]))
    0.0
    >>> ks_statistic(np.array([1.0, 2.0]), np.array([3.0, 4.0]))
    1.0
    """
    a, b = np.sort(a), np.sort(b)
    pooled = np.concatenate([a, b])
    gaps = np.searchsorted(a, pooled, "right") / len(a) - np.searchsorted(b, pooled, "right") / len(
        b
    )
    return float(np.max(np.abs(gaps)))


class QuickKSWIN(drift.KSWIN):
    """:class:`river.drift.KSWIN` with the exact test only where it could alarm."""

    def update(self, x: float) -> None:
        if self.drift_detected:
            self._reset()  # type: ignore[no-untyped-call]  # River's own, untyped
        self.n += 1
        self.window.append(x)
        if len(self.window) < self.window_size:
            self._drift_detected = False
            return
        older = [
            self.window[r]
            for r in self._rng.sample(range(self.window_size - self.stat_size), self.stat_size)
        ]
        newest = list(
            itertools.islice(self.window, self.window_size - self.stat_size, self.window_size)
        )
        statistic = ks_statistic(np.array(older), np.array(newest))
        if statistic > MIN_STATISTIC:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", category=RuntimeWarning)
                statistic, self.p_value = stats.ks_2samp(older, newest, method="auto")
        else:  # no alarm possible: the asymptotic p-value, for the gauge
            self.p_value = float(
                special.kolmogorov(  # type: ignore[assignment]
                    statistic * math.sqrt(len(older) * len(newest) / (len(older) + len(newest)))
                )
            )
        if self.p_value <= self.alpha and statistic > MIN_STATISTIC:
            self._drift_detected = True
            self.window = collections.deque(newest, maxlen=self.window_size)
        else:
            self._drift_detected = False


class SampledKSWIN:
    """River's KSWIN per feature, on one transaction per ``kswin_every`` seconds.

    KSWIN keeps a sliding window of ``kswin_window`` values and, at every
    update, compares its newest ``kswin_stat_size`` values with as many drawn
    from the rest by a two-sample KS test: a short, self-renewing reference
    that reacts within a day to a large sudden shift, where PSI and KS wait
    for a whole current window. Fed every transaction it would run a test
    per transaction and feature (about 0.4 ms each), and neighbouring
    transactions of one card are not independent; so it takes the first
    transaction of each slot of ``kswin_every`` seconds of event time: the
    test costs the same at any traffic, each hour of the day weighs the same
    in both samples, and with the defaults the newest sample is the last day
    and the rest the week before.

    An alarm's magnitude is the KS statistic of the newest samples against
    all the older ones in the window; its change time the newest samples'
    first. After an alarm KSWIN starts a new window (River's behaviour), so it
    alarms again only after ``kswin_window`` more samples.

    Parameters
    ----------
    config
        The settings: ``kswin_every`` (seconds of event time per sample; 0: no detector),
        ``kswin_window``, ``kswin_stat_size`` and ``kswin_alpha``.
    features
        The names of the vector's features to watch, one KSWIN each.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> config = DriftConfig(kswin_every=60, kswin_window=400, kswin_stat_size=100)
    >>> k = SampledKSWIN(config, ["x"])
    >>> events = [e for i in range(2000)
    ...           for e in k.update(TxnObservation(i * 60.0, {"x": rng.normal(i >= 1000)}))]
    >>> [(e.detector, e.subject, e.window) for e in events]
    [('kswin', 'x', 100)]
    >>> events[0].first_seen / 60  # in samples; the change came at sample 1,000
    1086.0
    """

    def __init__(self, config: DriftConfig, features: Iterable[str]) -> None:
        self.config = config
        self.detectors = {f: self._detector(f) for f in features} if config.kswin_every else {}
        #: Each detector's samples as (event time, value), mirroring River's window.
        self._samples = {
            f: deque[tuple[float, float]](maxlen=config.kswin_window) for f in self.detectors
        }
        self._next_slot = -math.inf
        #: Samples taken so far, and the latest test's p-value per feature (for the gauges).
        self.samples = 0
        self.latest: dict[str, float] = {}

    def alarm_keys(self) -> list[tuple[str, str]]:
        """Every (detector, subject) this can raise."""
        return [("kswin", f) for f in self.detectors]

    def _detector(self, feature: str) -> drift.KSWIN:
        return QuickKSWIN(
            alpha=self.config.kswin_alpha,
            window_size=self.config.kswin_window,
            stat_size=self.config.kswin_stat_size,
            seed=zlib.crc32(feature.encode()),
        )

    def update(self, observation: TxnObservation) -> list[DriftEvent]:
        at, vector = observation.at, observation.vector
        if at < self._next_slot or not self.detectors:
            return []
        every = self.config.kswin_every
        self._next_slot = (at // every + 1) * every
        self.samples += 1
        events = []
        for feature, detector in self.detectors.items():
            value = vector.get(feature)
            if value is None or not math.isfinite(value):
                continue
            samples = self._samples[feature]
            samples.append((at, float(value)))
            detector.update(float(value))
            if len(samples) < self.config.kswin_window:
                continue
            self.latest[feature] = float(detector.p_value)
            if detector.drift_detected:
                stat = self.config.kswin_stat_size
                older = [v for _, v in itertools.islice(samples, 0, len(samples) - stat)]
                newest = list(itertools.islice(samples, len(samples) - stat, None))
                magnitude = Reference.of(older).ks(np.array([v for _, v in newest]))
                events.append(DriftEvent("kswin", feature, magnitude, stat, newest[0][0], at))
                samples.clear()  # KSWIN starts a new window at its next update
        return events

    def refresh(self) -> None:
        """Start every window afresh (after a promote, or on demand)."""
        self.detectors = {f: self._detector(f) for f in self.detectors}
        for samples in self._samples.values():
            samples.clear()
        self.latest.clear()
