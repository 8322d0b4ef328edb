"""Samples the detectors compare: a seeded reservoir, and a reference window filled first
beside a sliding current window.
"""

from __future__ import annotations

import math
import random
import zlib
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Generic, TypeVar

import numpy as np

from monitoring.drift.config import DriftConfig
from monitoring.drift.stats import calendar_slot, calendar_weights

T = TypeVar("T")


class Reservoir(Generic[T]):
    """A uniform sample of at most ``size`` of the items offered (algorithm R).

    Seeded, so a replay takes the same sample. Until ``size`` items came it
    holds them all, in order.

    Parameters
    ----------
    size
        The most items the sample holds.
    seed
        Seeds the draws, so a replay takes the same sample.

    Examples
    --------
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


class Windows:
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

    Parameters
    ----------
    config
        The window settings: ``reference_size``, ``window_size`` and ``check_every``.
    subjects
        The names of the values compared (features, ``score``...), a sample of each.
    span
        The seconds of event time the reference must also span (0: none, the first
        ``reference_size`` observations).
    """

    def __init__(self, config: DriftConfig, subjects: Iterable[str], span: float = 0.0) -> None:
        self.config = config
        self.span = span
        self.reference: dict[str, list[float]] = {s: [] for s in subjects}
        #: The calendar slot (weekday and hour) of each reference value (with a span).
        self.reference_slots: dict[str, np.ndarray] = {}
        self.current: dict[str, deque[float]] = {
            s: deque(maxlen=config.window_size) for s in self.reference
        }
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
            s: Reservoir(self.config.reference_size, zlib.crc32(s.encode())) for s in self.reference
        }
        self._began = began
        self._offered = 0

    def add(self, values: Mapping[str, float], at: float) -> bool:
        """Add one observation; whether it is time to compare.

        Parameters
        ----------
        values
            The observation's value per subject (a missing or non-finite one is skipped).
        at
            Its event time (seconds).
        """
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
        return (
            len(self.times) == self.config.window_size and self.kept % self.config.check_every == 0
        )

    def _freeze_if_complete(self, at: float) -> None:
        if self._offered >= self.config.reference_size and at - (self._began or at) >= self.span:
            self.reference = {
                s: [v for v, _ in sample.items] for s, sample in self._samples.items()
            }
            self.reference_slots = {
                s: calendar_slot(np.array([t for _, t in sample.items]))
                for s, sample in self._samples.items()
            }
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
            for value, at in zip(current, times[len(times) - len(current) :], strict=True):
                self._samples[subject].offer((value, at))
            current.clear()
        self.times.clear()
        self.full = False
        if times:
            self._freeze_if_complete(times[-1])
