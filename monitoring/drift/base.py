"""What every drift detector shares: what it observes, the alarm it raises, the protocol it
meets, and the rule that raises an alarm once per crossing.

A detector watches one of two things, each one observation at a time:

- :class:`TxnObservation`: a newly scored transaction (its event time, feature vector, score,
  and the scorer of the model that gave it);
- :class:`LabelObservation`: an arrived label (its event time, fraud or not, the score its
  transaction was given, its delay, the card and the terminal).

Every detector meets :class:`Detector`: ``update`` with one observation returns the
alarms it raised (River's vocabulary), ``alarm_keys`` names every (detector, subject)
it can raise, and ``refresh`` takes a new reference (after a promote, or on demand).

Examples
--------
>>> from monitoring.drift.config import DriftConfig
>>> from monitoring.drift.data import DataDrift
>>> detector = DataDrift(DriftConfig(), ["amount"])
>>> isinstance(detector, Detector), detector.update(TxnObservation(0.0, {"amount": 12.5}))
(True, [])
>>> LabelObservation(86400.0, True, score=0.2, delay=3600.0).delay
3600.0
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar, runtime_checkable

import numpy as np


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
class Rescorer:
    """A model's scoring function, and a key that changes whenever the model does."""

    key: Hashable
    score_many: Callable[[Sequence[Mapping[str, float]]], np.ndarray]


@dataclass(frozen=True, slots=True)
class TxnObservation:
    """A newly scored transaction, as the transaction detectors observe it."""

    #: Its event time (seconds).
    at: float
    #: Its feature vector (empty: none to look at, nor to rescore).
    vector: Mapping[str, float] = field(default_factory=dict)
    #: The score it was given (NaN: not scored).
    score: float = math.nan
    #: The current model's scorer, for detectors that rescore their windows (None: none).
    scorer: Rescorer | None = None


@dataclass(frozen=True, slots=True)
class LabelObservation:
    """An arrived label, as the label detectors observe it."""

    #: The label's event time (seconds).
    at: float
    is_fraud: bool
    #: The score its transaction was given.
    score: float = math.nan
    #: Seconds from the transaction to its label.
    delay: float = 0.0
    card: str = ""
    terminal: str = ""


#: What a detector observes: :class:`TxnObservation` or :class:`LabelObservation`.
Observed = TypeVar("Observed", contravariant=True)


@runtime_checkable
class Detector(Protocol[Observed]):
    """What every drift detector is."""

    def alarm_keys(self) -> list[tuple[str, str]]:
        """Every (detector, subject) this can raise (their counters exist from the start)."""
        ...

    def update(self, observation: Observed) -> list[DriftEvent]:
        """Take one observation; the alarms it raised (usually none)."""
        ...

    def refresh(self) -> None:
        """Take a new reference from the next observations (after a promote, or on
        demand); a detector whose reference does not depend on the model keeps it."""
        ...


class Alarms:
    """Raises an alarm once per crossing; re-arms when the statistic falls back below
    ``rearm`` times its threshold (1: as soon as it is back under it).

    A window statistic on data that stays changed wanders around its threshold;
    re-armed at the threshold itself it pages again at each crossing, for the
    same change (on the drift bench, most of PSI's and KS's alarms).

    With ``per_episode``, a detector raises one alarm per episode: while any of
    its subjects is in alarm (not re-armed), another subject crossing is the
    same change spreading (a shifted amount moves the 1-day mean, then the
    maximum, then the sum) and raises nothing more. Its statistic still shows.

    Parameters
    ----------
    rearm
        Share of the threshold the statistic must fall back to (at or below) before its
        (detector, subject) can alarm again; in (0, 1].
    per_episode
        One alarm per detector while any of its subjects is in alarm (see above).

    Examples
    --------
    >>> alarms = Alarms(rearm=0.5)
    >>> [len(alarms.check("psi", "x", v, 0.1, 10, 0.0, 1.0)) for v in (0.2, 0.08, 0.2, 0.04, 0.2)]
    [1, 0, 0, 0, 1]
    >>> episodes = Alarms(rearm=0.5, per_episode=True)
    >>> [len(episodes.check("psi", s, v, 0.1, 10, 0.0, 1.0))
    ...  for s, v in (("x", 0.2), ("y", 0.3), ("x", 0.01), ("y", 0.01), ("y", 0.2))]
    [1, 0, 0, 0, 1]
    """

    def __init__(self, rearm: float = 1.0, per_episode: bool = False) -> None:
        self.rearm = rearm
        self.per_episode = per_episode
        self.active: set[tuple[str, str]] = set()

    def check(
        self,
        detector: str,
        subject: str,
        value: float,
        threshold: float,
        window: int,
        changed_at: float,
        at: float,
    ) -> list[DriftEvent]:
        """The alarm ``value`` raises (one event), or none: it must cross ``threshold`` while
        its (detector, subject) is armed.

        Parameters
        ----------
        detector, subject
            The detector's name and what it watches (a feature, ``score``, a model): the
            alarm's key.
        value
            The statistic's latest value (the alarm's magnitude): above ``threshold`` alarms.
        threshold
            The level the statistic must exceed.
        window
            Observations the statistic was computed on.
        changed_at
            Event time (seconds) of the change, e.g. the start of the current window.
        at
            Event time (seconds) of the observation that computed ``value`` (the alarm's
            ``first_seen``).
        """
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
