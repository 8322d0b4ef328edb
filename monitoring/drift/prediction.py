"""Prediction drift: the model's scores, recent traffic against the reference traffic, and
the share flagged at the operating threshold.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable, Mapping

import numpy as np

from monitoring.drift.base import Alarms, DriftEvent, Rescorer, TxnObservation
from monitoring.drift.config import DriftConfig
from monitoring.drift.stats import Reference, calendar_slot, calendar_weights
from monitoring.drift.windows import Reservoir, Windows


class PredictionDrift:
    """PSI and KS of the model's scores, recent traffic against the reference traffic.

    An online model changes as it learns, so this week's live scores against
    last week's would mostly measure the learning, not the traffic. When the
    caller passes the model's :class:`Rescorer`, a sample of each window's
    vectors (``prediction_sample``) is rescored with the current model at
    each check, and the comparison is like for like: the same model on old
    and new traffic. The ``calendar`` features (hour, day of week...) are a
    clock, not traffic, and windows shorter than a week hold different
    weekday mixes: the reference vectors are rescored with the calendar of
    the current ones. Without a scorer the live scores are compared. Checks
    run every ``check_every`` observations, and at most every quarter window
    when rescoring.

    The share of live scores at or above the operating threshold is kept too.

    Parameters
    ----------
    config
        The windows and thresholds: those of :class:`~monitoring.drift.data.DataDrift`
        and ``prediction_sample``.
    threshold
        The operating threshold: the flagged share counts the live scores at or above it.
    calendar
        The names of the calendar features, taken from the current vectors into the
        reference ones when they are rescored.
    """

    def __init__(
        self, config: DriftConfig, threshold: float = 0.5, calendar: Iterable[str] = ()
    ) -> None:
        self.config = config
        self.threshold = threshold
        self.calendar = tuple(calendar)
        self.windows = Windows(config, ["score"], config.reference_days * 86400)
        self.alarms = Alarms(config.rearm_share)
        self.flagged: deque[bool] = deque(maxlen=config.window_size)
        self._flagged_count = 0
        sample = max(1, config.prediction_sample)
        self._step = max(1, config.window_size // sample)
        #: Samples of the vectors (with their event times) that are rescored at each check;
        #: the reference's holds about ``prediction_sample`` per weekday when it spans days
        #: (only the current window's weekdays are rescored).
        self._reference_sample: Reservoir[tuple[Mapping[str, float], float]] = Reservoir(
            sample * 7 if self.windows.span else sample
        )
        self._current_sample: deque[tuple[Mapping[str, float], float]] = deque(maxlen=sample)
        #: The reference sample's weekdays, computed once it is complete.
        self._reference_slots: np.ndarray | None = None
        self._rescore_every = max(config.check_every, config.window_size // 4)
        #: The latest statistics, for the gauges: detector -> value.
        self.latest: dict[str, float] = {}

    def alarm_keys(self) -> list[tuple[str, str]]:
        """Every (detector, subject) this can raise."""
        return [("prediction_psi", "score"), ("prediction_ks", "score")]

    def update(self, observation: TxnObservation) -> list[DriftEvent]:
        """A scored transaction: its score, and its vector and the model's scorer to rescore
        the windows with."""
        at, score, scorer = observation.at, observation.score, observation.scorer
        vector = observation.vector or None
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

    def _rescored(self, scorer: Rescorer) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
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
            reference = [
                {**old, **{k: new[k] for k in self.calendar if k in new}}
                for old, new in zip(reference, itertools.cycle(current))
            ]
        return scorer.score_many(reference), scorer.score_many(current), weights

    def refresh(self) -> None:
        """Start a new reference from the recent traffic (see ``Windows.refresh``)."""
        self.windows.refresh()
        self._reference_sample = Reservoir(self._reference_sample.size)
        self._reference_slots = None
        for item in self._current_sample:
            self._reference_sample.offer(item)
        self._current_sample.clear()

    @property
    def flagged_share(self) -> float:
        return self._flagged_count / len(self.flagged) if self.flagged else 0.0
