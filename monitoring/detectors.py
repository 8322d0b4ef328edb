"""Drift detectors: pure, fed with event times, never reading the clock.

- :class:`DataDrift`: per feature, PSI and the two-sample KS statistic of the
  recent window against a reference window.
- :class:`PredictionDrift`: the same PSI on the scores, and the share of
  scores at or above the operating threshold.
- :class:`LabelDrift`: the fraud rate among arrived labels and the median
  label delay, recent window against reference.
- :class:`ConceptDrift`: ADWIN and Page-Hinkley (River) on the champion's
  prequential log loss, label by label.

Each detector returns :class:`DriftEvent` values when it alarms: which
detector, what drifted, how much, over which window, the event time of the
change (for window comparisons: the start of the current window, which
holds it) and when it was first seen (the event time of the observation that
raised it). An alarm is raised once, when the statistic crosses its
threshold, and re-armed when it falls back below it.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> d = DataDrift(DriftConfig(reference_size=500, window_size=500, check_every=50), ["x"])
>>> events = [e for i in range(3000) for e in d.update({"x": rng.normal(0 if i < 2000 else 3)},
...                                                     float(i))]
>>> [(e.detector, e.subject) for e in events][:1]
[('psi', 'x')]
>>> 2000 <= events[0].first_seen < 2200  # about a third of a window after the change
True
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from river import drift

from monitoring.drift_config import DriftConfig


@dataclass(frozen=True, slots=True)
class DriftEvent:
    """One alarm."""

    detector: str
    subject: str
    magnitude: float
    window: int
    changed_at: float
    first_seen: float


def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    """Population stability index of ``current`` against ``reference`` (quantile bins).

    >>> import numpy as np
    >>> x = np.arange(1000.0)
    >>> psi(x, x) == 0.0, psi(x, x + 500) > 1
    (True, True)
    """
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))
    expected = np.bincount(np.searchsorted(edges, reference, "right"), minlength=len(edges) + 1)
    actual = np.bincount(np.searchsorted(edges, current, "right"), minlength=len(edges) + 1)
    e = np.maximum(expected / len(reference), 1e-4)
    a = np.maximum(actual / len(current), 1e-4)
    return float(np.sum((a - e) * np.log(a / e)))


def ks_statistic(reference: np.ndarray, current: np.ndarray) -> float:
    """The two-sample Kolmogorov-Smirnov statistic: the largest gap between the CDFs.

    >>> import numpy as np
    >>> ks_statistic(np.array([1.0, 2, 3]), np.array([1.0, 2, 3]))
    0.0
    >>> ks_statistic(np.array([1.0, 2]), np.array([5.0, 6]))
    1.0
    """
    both = np.concatenate([reference, current])
    ref_cdf = np.searchsorted(np.sort(reference), both, "right") / len(reference)
    cur_cdf = np.searchsorted(np.sort(current), both, "right") / len(current)
    return float(np.max(np.abs(ref_cdf - cur_cdf)))


class _Windows:
    """A reference window (filled first) and a sliding current window, per subject."""

    def __init__(self, config: DriftConfig, subjects: Iterable[str]) -> None:
        self.config = config
        self.reference: dict[str, list[float]] = {s: [] for s in subjects}
        self.current: dict[str, deque[float]] = {
            s: deque(maxlen=config.window_size) for s in self.reference}
        self.times: deque[float] = deque(maxlen=config.window_size)
        self.seen = 0

    def add(self, values: Mapping[str, float], at: float) -> bool:
        """Add one observation; whether it is time to compare."""
        self.seen += 1
        full = len(next(iter(self.reference.values()), [])) >= self.config.reference_size
        for subject, ref in self.reference.items():
            value = values.get(subject)
            if value is None or not math.isfinite(value):
                continue
            (self.current[subject] if full else ref).append(float(value))
        if full:
            self.times.append(at)
        return (full and len(self.times) == self.config.window_size
                and self.seen % self.config.check_every == 0)

    def refresh(self) -> None:
        """Take the current window as the new reference (after a promote, or on demand)."""
        for subject in self.reference:
            self.reference[subject] = list(self.current[subject])
            self.current[subject].clear()
        self.times.clear()


class _Alarms:
    """Raises an alarm once per crossing; re-arms when the statistic falls back."""

    def __init__(self) -> None:
        self.active: set[tuple[str, str]] = set()

    def check(self, detector: str, subject: str, value: float, threshold: float, window: int,
              changed_at: float, at: float) -> list[DriftEvent]:
        key = (detector, subject)
        if value > threshold:
            if key not in self.active:
                self.active.add(key)
                return [DriftEvent(detector, subject, value, window, changed_at, at)]
        else:
            self.active.discard(key)
        return []


class DataDrift:
    """PSI and KS per feature, recent window against reference."""

    def __init__(self, config: DriftConfig, features: Iterable[str]) -> None:
        self.config = config
        self.windows = _Windows(config, features)
        self.alarms = _Alarms()
        #: The latest statistics, for the gauges: (detector, feature) -> value.
        self.latest: dict[tuple[str, str], float] = {}

    def update(self, vector: Mapping[str, float], at: float) -> list[DriftEvent]:
        if not self.windows.add(vector, at):
            return []
        events = []
        changed_at = self.windows.times[0]
        for feature, ref in self.windows.reference.items():
            current = np.array(self.windows.current[feature])
            reference = np.array(ref)
            if len(current) < 10 or len(reference) < 10:
                continue
            for name, value, threshold in (
                ("psi", psi(reference, current, self.config.bins), self.config.psi_threshold),
                ("ks", ks_statistic(reference, current), self.config.ks_threshold),
            ):
                self.latest[(name, feature)] = value
                events += self.alarms.check(name, feature, value, threshold, len(current),
                                            changed_at, at)
        return events

    def refresh(self) -> None:
        self.windows.refresh()


class PredictionDrift:
    """PSI of the scores and the share flagged at the threshold."""

    def __init__(self, config: DriftConfig, threshold: float = 0.5) -> None:
        self.data = DataDrift(config, ["score"])
        self.threshold = threshold
        self.flagged: deque[bool] = deque(maxlen=config.window_size)

    def update(self, score: float, at: float) -> list[DriftEvent]:
        self.flagged.append(score >= self.threshold)
        return [DriftEvent("prediction_" + e.detector, "score", e.magnitude, e.window,
                           e.changed_at, e.first_seen)
                for e in self.data.update({"score": score}, at)]

    @property
    def flagged_share(self) -> float:
        return sum(self.flagged) / len(self.flagged) if self.flagged else 0.0


class LabelDrift:
    """The fraud rate and the label delay among arrived labels, recent against reference."""

    def __init__(self, config: DriftConfig) -> None:
        self.config = config
        self.windows = _Windows(config, ["fraud", "delay"])
        self.alarms = _Alarms()
        self.latest: dict[str, float] = {}

    def update(self, is_fraud: bool, delay_seconds: float, at: float) -> list[DriftEvent]:
        if not self.windows.add({"fraud": float(is_fraud), "delay": delay_seconds}, at):
            return []
        ref, cur = self.windows.reference, self.windows.current
        rate_ref = max(float(np.mean(ref["fraud"])), 1e-6)
        rate_ratio = float(np.mean(cur["fraud"])) / rate_ref
        delay_ratio = float(np.median(cur["delay"])) / max(float(np.median(ref["delay"])), 1e-6)
        self.latest = {"fraud_rate_ratio": rate_ratio, "label_delay_ratio": delay_ratio}
        changed_at, window = self.windows.times[0], len(cur["fraud"])
        return [
            *self.alarms.check("fraud_rate", "labels", rate_ratio, self.config.fraud_rate_ratio,
                               window, changed_at, at),
            *self.alarms.check("label_delay", "labels", delay_ratio,
                               self.config.label_delay_ratio, window, changed_at, at),
        ]


class ConceptDrift:
    """ADWIN and Page-Hinkley on the champion's prequential log loss.

    Only a *rise* of the loss is concept drift: a model getting better as it
    learns also changes its loss, and must not page anyone. Page-Hinkley runs
    in ``up`` mode; an ADWIN detection counts when the mean of the window it
    keeps is above the mean before the cut.
    """

    def __init__(self, config: DriftConfig, model: str = "champion") -> None:
        self.config = config
        self.model = model
        self.adwin = drift.ADWIN(delta=config.adwin_delta)
        self.page_hinkley = drift.PageHinkley(threshold=config.page_hinkley_threshold,
                                              mode="up")
        self.seen = 0
        self.times: deque[float] = deque(maxlen=config.window_size)

    def update(self, score: float, is_fraud: bool, at: float) -> list[DriftEvent]:
        p = min(max(score, 1e-6), 1 - 1e-6)
        loss = -math.log(p if is_fraud else 1 - p)
        self.seen += 1
        self.times.append(at)
        before = self.adwin.estimation
        self.adwin.update(loss)
        self.page_hinkley.update(loss)
        events = []
        if self.seen > self.config.warm_up:
            if self.adwin.drift_detected and self.adwin.estimation > before:
                events.append(DriftEvent("adwin", self.model, self.adwin.estimation, self.seen,
                                         self.times[0], at))
            if self.page_hinkley.drift_detected:
                events.append(DriftEvent("page_hinkley", self.model, loss, self.seen,
                                         self.times[0], at))
        return events
