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

import itertools
import math
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
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


@dataclass(frozen=True)
class Reference:
    """What PSI and KS need of a reference sample: computed once, while it stays frozen."""

    values: np.ndarray
    #: Inner quantile edges of the PSI bins, and each bin's share (floored at 1e-4).
    edges: np.ndarray
    expected: np.ndarray

    @classmethod
    def of(cls, reference: np.ndarray | Sequence[float], bins: int = 10) -> Reference:
        values = np.sort(np.asarray(reference, dtype=float))
        edges = np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1]))
        counts = np.bincount(np.searchsorted(edges, values, "right"), minlength=len(edges) + 1)
        return cls(values, edges, np.maximum(counts / len(values), 1e-4))

    def psi(self, current: np.ndarray) -> float:
        actual = np.bincount(np.searchsorted(self.edges, current, "right"),
                             minlength=len(self.edges) + 1)
        a = np.maximum(actual / len(current), 1e-4)
        return float(np.sum((a - self.expected) * np.log(a / self.expected)))

    def ks(self, current: np.ndarray) -> float:
        both = np.concatenate([self.values, current])
        ref_cdf = np.searchsorted(self.values, both, "right") / len(self.values)
        cur_cdf = np.searchsorted(np.sort(current), both, "right") / len(current)
        return float(np.max(np.abs(ref_cdf - cur_cdf)))


def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    """Population stability index of ``current`` against ``reference`` (quantile bins).

    >>> import numpy as np
    >>> x = np.arange(1000.0)
    >>> psi(x, x) == 0.0, psi(x, x + 500) > 1
    (True, True)
    """
    return Reference.of(reference, bins).psi(current)


def ks_statistic(reference: np.ndarray, current: np.ndarray) -> float:
    """The two-sample Kolmogorov-Smirnov statistic: the largest gap between the CDFs.

    >>> import numpy as np
    >>> ks_statistic(np.array([1.0, 2, 3]), np.array([1.0, 2, 3]))
    0.0
    >>> ks_statistic(np.array([1.0, 2]), np.array([5.0, 6]))
    1.0
    """
    return Reference.of(reference).ks(current)


class _Windows:
    """A reference window (filled first) and a sliding current window, per subject."""

    def __init__(self, config: DriftConfig, subjects: Iterable[str]) -> None:
        self.config = config
        self.reference: dict[str, list[float]] = {s: [] for s in subjects}
        self.current: dict[str, deque[float]] = {
            s: deque(maxlen=config.window_size) for s in self.reference}
        self.times: deque[float] = deque(maxlen=config.window_size)
        self.seen = 0

    @property
    def full(self) -> bool:
        """Whether the reference is complete (and frozen until the next refresh)."""
        return len(next(iter(self.reference.values()), [])) >= self.config.reference_size

    def add(self, values: Mapping[str, float], at: float) -> bool:
        """Add one observation; whether it is time to compare."""
        self.seen += 1
        full = self.full
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
        #: The latest statistics, for the gauges: (detector, feature) -> value ...
        self.latest: dict[tuple[str, str], float] = {}
        #: ... and how many checks computed them.
        self.checks = 0
        #: The frozen references, summarised once for PSI and KS.
        self._references: dict[str, Reference] = {}

    def update(self, vector: Mapping[str, float], at: float) -> list[DriftEvent]:
        if not self.windows.add(vector, at):
            return []
        self.checks += 1
        events = []
        changed_at = self.windows.times[0]
        for feature, ref in self.windows.reference.items():
            current = np.array(self.windows.current[feature])
            if len(current) < 10 or len(ref) < 10:
                continue
            reference = self._references.get(feature)
            if reference is None:
                reference = self._references[feature] = Reference.of(ref, self.config.bins)
            for name, value, threshold in (
                ("psi", reference.psi(current), self.config.psi_threshold),
                ("ks", reference.ks(current), self.config.ks_threshold),
            ):
                self.latest[(name, feature)] = value
                events += self.alarms.check(name, feature, value, threshold, len(current),
                                            changed_at, at)
        return events

    def refresh(self) -> None:
        self.windows.refresh()
        self._references.clear()


@dataclass(frozen=True)
class Scorer:
    """A model's scoring function, and a key that changes whenever the model does."""

    key: Hashable
    score_many: Callable[[Sequence[Mapping[str, float]]], np.ndarray]


class PredictionDrift:
    """PSI and KS of the model's scores, recent traffic against the reference traffic.

    An online model changes as it learns, so this week's live scores against
    last week's would mostly measure the learning, not the traffic. When the
    caller passes the model's :class:`Scorer`, a sample of each window's
    vectors (``prediction_sample``) is rescored with the current model at
    each check, and the comparison is like for like: the same model on old
    and new traffic. The ``calendar`` features (hour, day of week...) are a
    clock, not traffic, and windows shorter than a week hold different
    weekday mixes: the reference vectors are rescored with the calendar of
    the current ones. Without a scorer the live scores are compared. Checks
    run every ``check_every`` observations, and at most every quarter window
    when rescoring.

    The share of live scores at or above the operating threshold is kept too.
    """

    def __init__(self, config: DriftConfig, threshold: float = 0.5,
                 calendar: Iterable[str] = ()) -> None:
        self.config = config
        self.threshold = threshold
        self.calendar = tuple(calendar)
        self.windows = _Windows(config, ["score"])
        self.alarms = _Alarms()
        self.flagged: deque[bool] = deque(maxlen=config.window_size)
        self._flagged_count = 0
        sample = max(1, config.prediction_sample)
        self._steps = (max(1, config.reference_size // sample),
                       max(1, config.window_size // sample))
        self.reference_vectors: list[Mapping[str, float]] = []
        self.current_vectors: deque[Mapping[str, float]] = deque(maxlen=sample)
        self._rescore_every = max(config.check_every, config.window_size // 4)
        #: The latest statistics, for the gauges: detector -> value.
        self.latest: dict[str, float] = {}

    def update(self, score: float, at: float, vector: Mapping[str, float] | None = None,
               scorer: Scorer | None = None) -> list[DriftEvent]:
        flagged = score >= self.threshold
        if len(self.flagged) == self.flagged.maxlen:
            self._flagged_count -= self.flagged[0]
        self.flagged.append(flagged)
        self._flagged_count += flagged
        if vector is not None:
            full = self.windows.full
            if self.windows.seen % self._steps[full] == 0:
                (self.current_vectors if full else self.reference_vectors).append(vector)
        if not self.windows.add({"score": score}, at):
            return []
        if scorer is not None and self.reference_vectors and self.current_vectors:
            if self.windows.seen % self._rescore_every:
                return []
            reference, current = self._rescored(scorer)
        else:
            reference = np.array(self.windows.reference["score"])
            current = np.array(self.windows.current["score"])
        changed_at, window = self.windows.times[0], len(self.windows.current["score"])
        events = []
        for name, value, threshold in (
            ("prediction_psi", psi(reference, current, self.config.bins),
             self.config.psi_threshold),
            ("prediction_ks", ks_statistic(reference, current), self.config.ks_threshold),
        ):
            self.latest[name] = value
            events += self.alarms.check(name, "score", value, threshold, window, changed_at, at)
        return events

    def _rescored(self, scorer: Scorer) -> tuple[np.ndarray, np.ndarray]:
        current = list(self.current_vectors)
        reference = self.reference_vectors
        if self.calendar:
            reference = [{**old, **{k: new[k] for k in self.calendar if k in new}}
                         for old, new in zip(reference, itertools.cycle(current))]
        return scorer.score_many(reference), scorer.score_many(current)

    def refresh(self) -> None:
        """Take the recent traffic as the new reference."""
        self.windows.refresh()
        self.reference_vectors = list(self.current_vectors)
        self.current_vectors.clear()

    @property
    def flagged_share(self) -> float:
        return self._flagged_count / len(self.flagged) if self.flagged else 0.0


def wilson_lower(successes: float, trials: int, z: float) -> float:
    """The lower end of the Wilson score interval of a proportion.

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


class LabelDrift:
    """The fraud rate and the label delay among arrived labels, recent against reference.

    The fraud-rate ratio is conservative: the lower end of the recent rate's
    confidence interval (Wilson, ``fraud_rate_z``) over the reference rate.
    Frauds are rare, so a window of 2,000 labels holds about 20 and a raw
    ratio of 2 happens by chance. And they cluster, so the interval is taken
    on the quasi-binomial effective sample: counts divided by the reference's
    :func:`dispersion` over blocks of ``fraud_rate_block`` labels.
    """

    def __init__(self, config: DriftConfig) -> None:
        self.config = config
        self.windows = _Windows(config, ["fraud", "delay"])
        self.alarms = _Alarms()
        self.latest: dict[str, float] = {}
        #: Rate and dispersion of the reference: labels do not depend on the model, so
        #: their reference is never refreshed once taken.
        self._reference: tuple[float, float] | None = None

    def update(self, is_fraud: bool, delay_seconds: float, at: float) -> list[DriftEvent]:
        if not self.windows.add({"fraud": float(is_fraud), "delay": delay_seconds}, at):
            return []
        ref, cur = self.windows.reference, self.windows.current
        if self._reference is None:  # the reference is frozen until refresh()
            self._reference = (max(float(np.mean(ref["fraud"])), 1e-6),
                               dispersion(ref["fraud"], self.config.fraud_rate_block))
        rate_ref, phi = self._reference
        recent = wilson_lower(float(np.sum(cur["fraud"])) / phi, int(len(cur["fraud"]) / phi),
                              self.config.fraud_rate_z)
        rate_ratio = recent / rate_ref
        delay_ratio = float(np.median(cur["delay"])) / max(float(np.median(ref["delay"])), 1e-6)
        self.latest = {"fraud_rate_ratio": rate_ratio, "label_delay_ratio": delay_ratio,
                       "fraud_rate_dispersion": phi}
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
    keeps is above the mean before the cut. The probabilities are clipped to
    ``[loss_clip, 1 - loss_clip]`` first, so that one confidently missed
    fraud weighs a few genuine mistakes, not a whole burst of them.
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
        clip = self.config.loss_clip
        p = min(max(score, clip), 1 - clip)
        loss = -math.log(p if is_fraud else 1 - p)
        self.seen += 1
        self.times.append(at)
        before = self.adwin.estimation
        self.adwin.update(loss)
        self.page_hinkley.update(loss)
        events = []
        if self.adwin.drift_detected and self.adwin.estimation > before:
            events.append(DriftEvent("adwin", self.model, self.adwin.estimation, self.seen,
                                     self.times[0], at))
        if self.page_hinkley.drift_detected:
            events.append(DriftEvent("page_hinkley", self.model, loss, self.seen,
                                     self.times[0], at))
        return events
