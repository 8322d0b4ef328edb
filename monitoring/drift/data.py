"""Data drift: per feature, PSI and the two-sample KS statistic of the recent window against
a reference window.

Examples
--------
>>> import numpy as np

>>> rng = np.random.default_rng(0)
>>> config = DriftConfig(reference_size=500, window_size=500, check_every=50, reference_days=0)
>>> d = DataDrift(config, ["x"])
>>> events = [e for i in range(3000) for e in d.update(
...     TxnObservation(float(i), {"x": rng.normal(0 if i < 2000 else 3)}))]
>>> [(e.detector, e.subject) for e in events][:1]
[('psi', 'x')]
>>> events[0].first_seen  # the change came at 2,000: a fifth of a window later
2099.0
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from monitoring.drift.base import Alarms, DriftEvent, TxnObservation
from monitoring.drift.config import DriftConfig
from monitoring.drift.stats import Reference
from monitoring.drift.windows import Windows


class DataDrift:
    """PSI and KS per feature, recent window against reference.

    Parameters
    ----------
    config
        The windows and thresholds: ``reference_size``, ``reference_days``,
        ``window_size``, ``check_every``, ``bins``, ``psi_threshold``, ``ks_threshold``,
        ``rearm_share``, ``alarm_per_episode``.
    features
        The names of the vector's features to watch.
    """

    def __init__(self, config: DriftConfig, features: Iterable[str]) -> None:
        self.config = config
        self.windows = Windows(config, features, config.reference_days * 86400)
        self.alarms = Alarms(config.rearm_share, config.alarm_per_episode)
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

    def update(self, observation: TxnObservation) -> list[DriftEvent]:
        at = observation.at
        if not self.windows.add(observation.vector, at):
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
                events += self.alarms.check(
                    name, feature, value, threshold, len(current), changed_at, at
                )
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
        """Start a new reference from the recent traffic (see ``Windows.refresh``)."""
        self.windows.refresh()
        self._references.clear()
        self._sorted.clear()
