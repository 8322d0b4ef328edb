"""Drift detectors: pure, fed with event times, never reading the clock.

- :class:`DataDrift`: per feature, PSI and the two-sample KS statistic of the
  recent window against a reference window.
- :class:`SampledKSWIN`: River's KSWIN per feature, on one transaction per
  few minutes of event time, against the week before.
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
>>> config = DriftConfig(reference_size=500, window_size=500, check_every=50, reference_days=0)
>>> d = DataDrift(config, ["x"])
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
import random
import zlib
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Generic, TypeVar

import numpy as np
from river import drift

from monitoring import ert
from monitoring.drift_config import DriftConfig
from monitoring.kswin import QuickKSWIN

T = TypeVar("T")


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
    def of(cls, reference: np.ndarray | Sequence[float], bins: int = 10,
           weights: np.ndarray | None = None) -> Reference:
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

        >>> r = Reference.weighted(np.array([1.0, 2.0, 3.0, 4.0]), np.array([0, 0, 1.0, 1.0]))
        >>> r.ks(np.array([3.0, 4.0])), r.psi(np.array([3.0, 4.0])) < 1e-9
        (0.0, True)
        """
        share = weights / weights.sum()
        cdf = np.cumsum(share)
        quantiles = np.linspace(0, 1, bins + 1)[1:-1]
        at = np.minimum(np.searchsorted(cdf, quantiles - 1e-12, "left"), len(values) - 1)
        edges = np.unique(values[at])
        counts = np.bincount(np.searchsorted(edges, values, "right"), weights=share,
                             minlength=len(edges) + 1)
        return cls(values, edges, np.maximum(counts, 1e-4), np.concatenate([[0.0], cdf]))

    def psi(self, current: np.ndarray) -> float:
        actual = np.bincount(np.searchsorted(self.edges, current, "right"),
                             minlength=len(self.edges) + 1)
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


def calendar_weights(reference_slots: np.ndarray, current_slots: np.ndarray,
                     ) -> np.ndarray | None:
    """Weights that give the reference the current window's weekday and hour mix.

    Traffic has a weekly and a daily cycle, so a window of a Saturday, or of
    an afternoon, compared with a whole week would report "Saturday" or
    "afternoon" (at high traffic a window of a few thousand transactions
    covers only part of a day). Each reference value is weighted by its
    weekday's share of the current window over its share of the reference,
    times the same ratio for its hour of day. None (compare unweighted) when
    the current window has a weekday or an hour the reference lacks.
    ``*_slots`` are :func:`calendar_slot` values.

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


class Reservoir(Generic[T]):
    """A uniform sample of at most ``size`` of the items offered (algorithm R).

    Seeded, so a replay takes the same sample. Until ``size`` items came it
    holds them all, in order.

    >>> r = Reservoir(3)
    >>> for i in range(1000):
    ...     r.offer(i)
    >>> len(r.items), r.offered, all(0 <= i < 1000 for i in r.items)
    (3, 1000, True)
    """

    def __init__(self, size: int, seed: int = 0) -> None:
        self.size = size
        self.items: list[T] = []
        self.offered = 0
        self._rng = random.Random(seed)

    def offer(self, item: T) -> None:
        self.offered += 1
        if len(self.items) < self.size:
            self.items.append(item)
        else:
            slot = self._rng.randrange(self.offered)
            if slot < self.size:
                self.items[slot] = item


class _Windows:
    """A reference sample (filled first) and a sliding current window, per subject.

    The reference is complete once ``reference_size`` observations came and
    they span ``span`` seconds of event time. Traffic has a weekly cycle (more
    on Saturdays, less on Sundays): a reference of a few days against a day of
    recent traffic would report the weekday. So with a span of a week the
    reference keeps filling for the whole week, as a uniform sample
    (:class:`Reservoir`) of ``reference_size``. Without a span it is the first
    ``reference_size`` observations, in order.

    The current window should hold about a day, so that every hour weighs in
    (the reference is also weighted to its hours, but a window of a few night
    hours meets a thin, heavily weighted slice of the reference). So once the
    reference is frozen, the window keeps every ``stride``-th observation,
    ``stride`` being the reference's observations per day over
    ``window_size``, rounded (1 up to 3,000 a day with the defaults).
    """

    def __init__(self, config: DriftConfig, subjects: Iterable[str], span: float = 0.0) -> None:
        self.config = config
        self.span = span
        self.reference: dict[str, list[float]] = {s: [] for s in subjects}
        #: The calendar slot (weekday and hour) of each reference value (with a span).
        self.reference_slots: dict[str, np.ndarray] = {}
        self.current: dict[str, deque[float]] = {
            s: deque(maxlen=config.window_size) for s in self.reference}
        self.times: deque[float] = deque(maxlen=config.window_size)
        self.seen = 0
        #: The current window keeps every stride-th observation (set when the reference
        #: freezes), and how many it kept.
        self.stride = 1
        self.kept = 0
        #: Whether the reference is complete (and frozen until the next refresh).
        self.full = False
        #: The current window's calendar slots, as of observation ``seen``.
        self._current_slots: tuple[int, np.ndarray] = (-1, np.empty(0, dtype=np.int64))
        self._restart()

    def _restart(self, began: float | None = None) -> None:
        self._samples: dict[str, Reservoir[tuple[float, float]]] = {
            s: Reservoir(self.config.reference_size, zlib.crc32(s.encode()))
            for s in self.reference}
        self._began = began
        self._offered = 0

    def add(self, values: Mapping[str, float], at: float) -> bool:
        """Add one observation; whether it is time to compare."""
        self.seen += 1
        if not self.full:
            self._offered += 1
            self._began = at if self._began is None else self._began
            for subject, sample in self._samples.items():
                value = values.get(subject)
                if value is not None and math.isfinite(value):
                    sample.offer((float(value), at))
            self._freeze_if_complete(at)
            return False
        if self.seen % self.stride:
            return False
        self.kept += 1
        for subject, current in self.current.items():
            value = values.get(subject)
            if value is not None and math.isfinite(value):
                current.append(float(value))
        self.times.append(at)
        return (len(self.times) == self.config.window_size
                and self.kept % self.config.check_every == 0)

    def _freeze_if_complete(self, at: float) -> None:
        if self._offered >= self.config.reference_size and at - (self._began or at) >= self.span:
            self.reference = {s: [v for v, _ in sample.items]
                              for s, sample in self._samples.items()}
            self.reference_slots = {s: calendar_slot(np.array([t for _, t in sample.items]))
                                    for s, sample in self._samples.items()}
            self.full = True
            if self.span:
                per_day = self._offered / max(at - (self._began or at), 3600.0) * 86400
                self.stride = max(1, round(per_day / self.config.window_size))

    def weights(self, subject: str) -> np.ndarray | None:
        """The reference's weights for the current window's weekday and hour mix (None:
        none)."""
        slots = self.reference_slots.get(subject)
        if not self.span or slots is None or not len(slots) or not self.times:
            return None
        return calendar_weights(slots, self.current_slots())

    def current_slots(self) -> np.ndarray:
        """The calendar slot of each observation of the current window (computed once per
        check, not once per subject)."""
        if self._current_slots[0] != self.seen:
            self._current_slots = (self.seen, calendar_slot(np.array(self.times)))
        return self._current_slots[1]

    def refresh(self) -> None:
        """Start a new reference from the current window (after a promote, or on demand);
        it is complete once it also spans ``span``."""
        times = list(self.times)
        self._restart(times[0] if times else None)
        self._offered = len(times) * self.stride  # the window kept one in stride
        for subject, current in self.current.items():
            for value, at in zip(current, times[len(times) - len(current):], strict=True):
                self._samples[subject].offer((value, at))
            current.clear()
        self.times.clear()
        self.full = False
        if times:
            self._freeze_if_complete(times[-1])


class _Alarms:
    """Raises an alarm once per crossing; re-arms when the statistic falls back below
    ``rearm`` times its threshold (1: as soon as it is back under it).

    A window statistic on data that stays changed wanders around its threshold;
    re-armed at the threshold itself it pages again at each crossing, for the
    same change (on the drift bench, most of PSI's and KS's alarms).

    With ``per_episode``, a detector raises one alarm per episode: while any of
    its subjects is in alarm (not re-armed), another subject crossing is the
    same change spreading (a shifted amount moves the 1-day mean, then the
    maximum, then the sum) and raises nothing more. Its statistic still shows.

    >>> alarms = _Alarms(rearm=0.5)
    >>> [len(alarms.check("psi", "x", v, 0.1, 10, 0.0, 1.0)) for v in (0.2, 0.08, 0.2, 0.04, 0.2)]
    [1, 0, 0, 0, 1]
    >>> episodes = _Alarms(rearm=0.5, per_episode=True)
    >>> [len(episodes.check("psi", s, v, 0.1, 10, 0.0, 1.0))
    ...  for s, v in (("x", 0.2), ("y", 0.3), ("x", 0.01), ("y", 0.01), ("y", 0.2))]
    [1, 0, 0, 0, 1]
    """

    def __init__(self, rearm: float = 1.0, per_episode: bool = False) -> None:
        self.rearm = rearm
        self.per_episode = per_episode
        self.active: set[tuple[str, str]] = set()

    def check(self, detector: str, subject: str, value: float, threshold: float, window: int,
              changed_at: float, at: float) -> list[DriftEvent]:
        key = (detector, subject)
        if value > threshold:
            if key not in self.active:
                ongoing = self.per_episode and any(d == detector for d, _ in self.active)
                self.active.add(key)
                if not ongoing:
                    return [DriftEvent(detector, subject, value, window, changed_at, at)]
        elif value <= threshold * self.rearm:
            self.active.discard(key)
        return []


class DataDrift:
    """PSI and KS per feature, recent window against reference."""

    def __init__(self, config: DriftConfig, features: Iterable[str]) -> None:
        self.config = config
        self.windows = _Windows(config, features, config.reference_days * 86400)
        self.alarms = _Alarms(config.rearm_share, config.alarm_per_episode)
        #: The latest statistics, for the gauges: (detector, feature) -> value ...
        self.latest: dict[tuple[str, str], float] = {}
        #: ... and how many checks computed them.
        self.checks = 0
        #: The frozen references, summarised once for PSI and KS (unweighted) ...
        self._references: dict[str, Reference] = {}
        #: ... or sorted once, with each value's weekday (weighted at each check).
        self._sorted: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def alarm_keys(self) -> list[tuple[str, str]]:
        """Every (detector, subject) this can raise."""
        return [(name, f) for f in self.windows.reference for name in ("psi", "ks")]

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
            reference = self._reference(feature, ref)
            for name, value, threshold in (
                ("psi", reference.psi(current), self.config.psi_threshold),
                ("ks", reference.ks(current), self.config.ks_threshold),
            ):
                self.latest[(name, feature)] = value
                events += self.alarms.check(name, feature, value, threshold, len(current),
                                            changed_at, at)
        return events

    def _reference(self, feature: str, values: list[float]) -> Reference:
        """The feature's reference, weighted to the current window's weekdays if it can be."""
        weights = self.windows.weights(feature)
        if weights is None:
            reference = self._references.get(feature)
            if reference is None:
                reference = self._references[feature] = Reference.of(values, self.config.bins)
            return reference
        if feature not in self._sorted:
            array = np.asarray(values)
            order = np.argsort(array, kind="stable")
            self._sorted[feature] = (array[order], order)
        ordered, order = self._sorted[feature]
        return Reference.weighted(ordered, weights[order], self.config.bins)

    def refresh(self) -> None:
        self.windows.refresh()
        self._references.clear()
        self._sorted.clear()


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

    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> config = DriftConfig(kswin_every=60, kswin_window=400, kswin_stat_size=100)
    >>> k = SampledKSWIN(config, ["x"])
    >>> events = [e for i in range(2000) for e in k.update({"x": rng.normal(i >= 1000)}, i * 60.0)]
    >>> [(e.detector, e.subject, e.window) for e in events]
    [('kswin', 'x', 100)]
    >>> 1000 * 60 <= events[0].first_seen < 1100 * 60
    True
    """

    def __init__(self, config: DriftConfig, features: Iterable[str]) -> None:
        self.config = config
        self.detectors = {f: self._detector(f) for f in features} if config.kswin_every else {}
        #: Each detector's samples as (event time, value), mirroring River's window.
        self._samples = {f: deque[tuple[float, float]](maxlen=config.kswin_window)
                         for f in self.detectors}
        self._next_slot = -math.inf
        #: Samples taken so far, and the latest test's p-value per feature (for the gauges).
        self.samples = 0
        self.latest: dict[str, float] = {}

    def alarm_keys(self) -> list[tuple[str, str]]:
        """Every (detector, subject) this can raise."""
        return [("kswin", f) for f in self.detectors]

    def _detector(self, feature: str) -> drift.KSWIN:
        return QuickKSWIN(alpha=self.config.kswin_alpha, window_size=self.config.kswin_window,
                          stat_size=self.config.kswin_stat_size,
                          seed=zlib.crc32(feature.encode()))

    def update(self, vector: Mapping[str, float], at: float) -> list[DriftEvent]:
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
        self.windows = _Windows(config, ["score"], config.reference_days * 86400)
        self.alarms = _Alarms(config.rearm_share)
        self.flagged: deque[bool] = deque(maxlen=config.window_size)
        self._flagged_count = 0
        sample = max(1, config.prediction_sample)
        self._step = max(1, config.window_size // sample)
        #: Samples of the vectors (with their event times) that are rescored at each check;
        #: the reference's holds about ``prediction_sample`` per weekday when it spans days
        #: (only the current window's weekdays are rescored).
        self._reference_sample: Reservoir[tuple[Mapping[str, float], float]] = Reservoir(
            sample * 7 if self.windows.span else sample)
        self._current_sample: deque[tuple[Mapping[str, float], float]] = deque(maxlen=sample)
        #: The reference sample's weekdays, computed once it is complete.
        self._reference_slots: np.ndarray | None = None
        self._rescore_every = max(config.check_every, config.window_size // 4)
        #: The latest statistics, for the gauges: detector -> value.
        self.latest: dict[str, float] = {}

    def alarm_keys(self) -> list[tuple[str, str]]:
        """Every (detector, subject) this can raise."""
        return [("prediction_psi", "score"), ("prediction_ks", "score")]

    def update(self, score: float, at: float, vector: Mapping[str, float] | None = None,
               scorer: Scorer | None = None) -> list[DriftEvent]:
        flagged = score >= self.threshold
        if len(self.flagged) == self.flagged.maxlen:
            self._flagged_count -= self.flagged[0]
        self.flagged.append(flagged)
        self._flagged_count += flagged
        if vector is not None:
            if not self.windows.full:
                self._reference_sample.offer((vector, at))
                self._reference_slots = None
            elif self.windows.seen % (self._step * self.windows.stride) == 0:
                self._current_sample.append((vector, at))  # spread over the window's span
        if not self.windows.add({"score": score}, at):
            return []
        if scorer is not None and self._reference_sample.items and self._current_sample:
            if self.windows.kept % self._rescore_every:  # counted as the window's checks are
                return []
            scores, current, weights = self._rescored(scorer)
        else:
            scores = np.array(self.windows.reference["score"])
            current = np.array(self.windows.current["score"])
            weights = self.windows.weights("score")
        reference = Reference.of(scores, self.config.bins, weights)
        changed_at, window = self.windows.times[0], len(self.windows.current["score"])
        events = []
        for name, value, threshold in (
            ("prediction_psi", reference.psi(current), self.config.psi_threshold),
            ("prediction_ks", reference.ks(current), self.config.ks_threshold),
        ):
            self.latest[name] = value
            events += self.alarms.check(name, "score", value, threshold, window, changed_at, at)
        return events

    def _rescored(self, scorer: Scorer) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Both samples' scores by the current model, and the reference's weekday weights
        (only the reference vectors of the current window's weekdays are scored)."""
        current = [vector for vector, _ in self._current_sample]
        items = self._reference_sample.items
        weights = None
        if self.windows.span:
            if self._reference_slots is None:  # the sample is frozen: once
                self._reference_slots = calendar_slot(np.array([t for _, t in items]))
            weights = calendar_weights(self._reference_slots, self.windows.current_slots())
        if weights is not None:
            kept = np.flatnonzero(weights > 0)
            items, weights = [items[i] for i in kept], weights[kept]
        reference = [vector for vector, _ in items]
        if self.calendar:
            reference = [{**old, **{k: new[k] for k in self.calendar if k in new}}
                         for old, new in zip(reference, itertools.cycle(current))]
        return scorer.score_many(reference), scorer.score_many(current), weights

    def refresh(self) -> None:
        """Start a new reference from the recent traffic (see ``_Windows.refresh``)."""
        self.windows.refresh()
        self._reference_sample = Reservoir(self._reference_sample.size)
        self._reference_slots = None
        for item in self._current_sample:
            self._reference_sample.offer(item)
        self._current_sample.clear()

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
    """The fraud rate among arrived labels, and the delay of fraud labels, recent
    against reference.

    The fraud-rate ratio is conservative: the lower end of the recent rate's
    confidence interval (Wilson, ``fraud_rate_z``) over the reference rate.
    Frauds are rare, so a window of 2,000 labels holds about 20 and a raw
    ratio of 2 happens by chance. And they cluster, so the interval is taken
    on the quasi-binomial effective sample: counts divided by the reference's
    :func:`dispersion` over blocks of ``fraud_rate_block`` labels.

    The label delay is the median delay of the last ``label_delay_frauds``
    fraud labels (chargebacks) over that of the first one and a half times
    as many after the warm-up: genuine
    labels come when the transaction matures, a fixed delay, and being 99% of
    labels they would hide a chargeback backlog entirely.
    """

    def __init__(self, config: DriftConfig) -> None:
        self.config = config
        self.windows = _Windows(config, ["fraud"])
        frauds = config.label_delay_frauds
        self.delays = _Windows(replace(config, reference_size=frauds + frauds // 2,
                                       window_size=frauds, check_every=1), ["delay"])
        self.alarms = _Alarms()
        self.latest: dict[str, float] = {}
        #: Rate and dispersion of the reference: labels do not depend on the model, so
        #: their reference is never refreshed once taken.
        self._reference: tuple[float, float] | None = None

    def alarm_keys(self) -> list[tuple[str, str]]:
        """Every (detector, subject) this can raise."""
        return [("fraud_rate", "labels"), ("label_delay", "labels")]

    def update(self, is_fraud: bool, delay_seconds: float, at: float) -> list[DriftEvent]:
        events = []
        if is_fraud and self.delays.add({"delay": delay_seconds}, at):
            ref, cur = self.delays.reference["delay"], self.delays.current["delay"]
            ratio = float(np.median(cur)) / max(float(np.median(ref)), 1e-6)
            self.latest["label_delay_ratio"] = ratio
            events += self.alarms.check("label_delay", "labels", ratio,
                                        self.config.label_delay_ratio, len(cur),
                                        self.delays.times[0], at)
        if not self.windows.add({"fraud": float(is_fraud)}, at):
            return events
        ref_fraud, cur_fraud = self.windows.reference["fraud"], self.windows.current["fraud"]
        if self._reference is None:  # the reference is frozen until refresh()
            self._reference = (max(float(np.mean(ref_fraud)), 1e-6),
                               dispersion(ref_fraud, self.config.fraud_rate_block))
        rate_ref, phi = self._reference
        recent = wilson_lower(float(np.sum(cur_fraud)) / phi, int(len(cur_fraud) / phi),
                              self.config.fraud_rate_z)
        rate_ratio = recent / rate_ref
        self.latest.update({"fraud_rate_ratio": rate_ratio, "fraud_rate_dispersion": phi})
        return events + self.alarms.check("fraud_rate", "labels", rate_ratio,
                                          self.config.fraud_rate_ratio, len(cur_fraud),
                                          self.windows.times[0], at)


#: River's Page-Hinkley defaults, named: the ERT simulation must run the same test.
PAGE_HINKLEY_DELTA = 0.005
PAGE_HINKLEY_ALPHA = 1 - 0.0001


class ConceptDrift:
    """ADWIN and Page-Hinkley on the champion's prequential log loss.

    ADWIN takes the mean loss of each block of ``adwin_block`` labels:
    its bound assumes independent values, and frauds come in bursts (a
    stolen card is used several times in an hour), which made it page on
    steady traffic label by label.

    Only a *rise* of the loss is concept drift: a model getting better as it
    learns also changes its loss, and must not page anyone. Page-Hinkley runs
    in ``up`` mode; an ADWIN detection counts when the mean of the window it
    keeps is above the mean before the cut. The probabilities are clipped to
    ``[loss_clip, 1 - loss_clip]`` first, so that one confidently missed
    fraud weighs a few genuine mistakes, not a whole burst of them.

    Page-Hinkley's threshold is derived from its share of the expected run-time
    between false alarms (``ert_days * ert_detectors``, :mod:`monitoring.ert`): the
    losses of the first
    ``reference_days`` (and ``reference_size`` labels) are its reference, and
    it runs from then on; unless ``page_hinkley_threshold`` fixes it by hand.
    """

    def __init__(self, config: DriftConfig, model: str = "champion") -> None:
        self.config = config
        self.model = model
        self.adwin = drift.ADWIN(delta=config.adwin_delta)
        #: Page-Hinkley, once its threshold is known: set by hand, or derived from the
        #: ERT on the losses of the reference (collected first, in ``_reference``).
        self.page_hinkley: drift.PageHinkley | None = None
        self.threshold: float | None = None
        self._reference: list[tuple[float, float]] = []
        if config.page_hinkley_threshold > 0:
            self._start_page_hinkley(config.page_hinkley_threshold)
        self.seen = 0
        self.times: deque[float] = deque(maxlen=config.window_size)
        self._block: list[float] = []

    def _start_page_hinkley(self, threshold: float) -> None:
        self.threshold = threshold
        self.page_hinkley = drift.PageHinkley(threshold=threshold, mode="up",
                                              delta=PAGE_HINKLEY_DELTA,
                                              alpha=PAGE_HINKLEY_ALPHA)

    def _calibrate_if_complete(self) -> None:
        """Derive Page-Hinkley's threshold once the reference spans ``reference_days``
        and holds ``reference_size`` losses."""
        first, last = self._reference[0][1], self._reference[-1][1]
        if len(self._reference) < self.config.reference_size or \
                last - first < self.config.reference_days * 86400:
            return
        losses, times = zip(*self._reference, strict=True)
        self._start_page_hinkley(ert.page_hinkley_threshold(
            losses, times, self.config.ert_days * self.config.ert_detectors,
            PAGE_HINKLEY_DELTA, PAGE_HINKLEY_ALPHA,
            runs=self.config.ert_runs, block_seconds=self.config.ert_block_hours * 3600))
        self._reference = []

    def alarm_keys(self) -> list[tuple[str, str]]:
        """Every (detector, subject) this can raise."""
        return [("adwin", self.model), ("page_hinkley", self.model)]

    def update(self, score: float, is_fraud: bool, at: float) -> list[DriftEvent]:
        clip = self.config.loss_clip
        p = min(max(score, clip), 1 - clip)
        loss = -math.log(p if is_fraud else 1 - p)
        self.seen += 1
        self.times.append(at)
        if self.page_hinkley is not None:
            self.page_hinkley.update(loss)
        else:
            self._reference.append((loss, at))
            self._calibrate_if_complete()
        events = []
        self._block.append(loss)
        if len(self._block) >= self.config.adwin_block:
            before = self.adwin.estimation
            self.adwin.update(sum(self._block) / len(self._block))
            self._block.clear()
        else:
            before = math.inf  # no new block: ADWIN did not move
        if self.adwin.drift_detected and self.adwin.estimation > before:
            events.append(DriftEvent("adwin", self.model, self.adwin.estimation, self.seen,
                                     self.times[0], at))
        if self.page_hinkley is not None and self.page_hinkley.drift_detected:
            events.append(DriftEvent("page_hinkley", self.model, loss, self.seen,
                                     self.times[0], at))
        return events
