"""Missed frauds: a rise in the share of fraud incidents the champion scored below the
operating threshold, tested sequentially against a reference.

A new fraud pattern whose inputs look like genuine traffic is scored low: the
champion lets it through and nothing in the scored transactions shows it.
Its frauds show when their labels (chargebacks) arrive: more of them than
usual had been scored below the threshold. :class:`MissedFraud` watches that
share.

Frauds come in incidents: a skimmed terminal has every transaction at it
labelled fraud for days, all scored alike; a stolen card is used several
times. Counted label by label, one incident of a dozen missed frauds moves
the share like a new pattern. So the detector counts incidents: a fraud
label counts only when neither its card nor its terminal had a fraud label in
the previous ``missed_fraud_incident_days``, and the incident is missed when
that first label was.

The reference is the first incidents after the model detectors are armed:
at least ``missed_fraud_reference`` of them over at least ``reference_days``
of event time (a week, for the weekly cycle). Its share of missed incidents
``p0`` (with half an incident added to both counts, so a reference without a
miss still has a positive share) is the null hypothesis. The test is Page's
CUSUM for a rise from ``p0`` to ``p1 = max(missed_fraud_ratio * p0, p0 +
missed_fraud_rise)``: each incident adds its log-likelihood ratio divided by
the dispersion (incidents close in time are still not independent: at least
``missed_fraud_dispersion``, more if the reference's five blocks of
incidents vary more, as :func:`~monitoring.drift.stats.dispersion`
measures), the sum is floored at 0, and above ``missed_fraud_threshold`` it
alarms. The alarm's change time is when the sum last left 0: CUSUM's own
estimate of when the rise began. An alarm is raised once, and re-armed when
the sum is back at 0 (the rise is over).

The share depends on the model, so :meth:`MissedFraud.refresh` (after a
promote) takes a new reference.

Examples
--------
Frauds the champion used to catch 90% of the time start being missed 60% of
the time after incident 300 (each incident on its own card and terminal, a
day apart):

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> config = DriftConfig(reference_days=0, missed_fraud_reference=100)
>>> detector = MissedFraud(config, threshold=0.5)
>>> events = []
>>> for i in range(600):
...     missed = rng.random() < (0.6 if i >= 300 else 0.1)
...     events += detector.update(LabelObservation(i * 86400.0, True, 0.1 if missed else 0.9,
...                                       card=f"card{i}", terminal=f"term{i}"))
>>> [(e.detector, e.subject) for e in events]
[('missed_fraud', 'champion')]
>>> events[0].first_seen / 86400  # 37 incidents after the change
337.0
>>> events[0].changed_at / 86400  # when the CUSUM last left 0
301.0
>>> round(detector.latest["missed_fraud_reference_share"], 2)
0.1
"""

from __future__ import annotations

import math
from collections import deque

from monitoring.drift.base import DriftEvent, LabelObservation
from monitoring.drift.config import DriftConfig
from monitoring.drift.stats import dispersion


class MissedFraud:
    """The share of fraud incidents scored below ``threshold``, against a reference.

    Parameters
    ----------
    config
        The settings: the ``missed_fraud_*`` ones and ``reference_days``.
    threshold
        The operating threshold: a fraud scored below it was missed.
    model
        The model whose misses are watched: the subject of the alarm.
    """

    def __init__(
        self, config: DriftConfig, threshold: float = 0.5, model: str = "champion"
    ) -> None:
        self.config = config
        self.threshold = threshold
        self.model = model
        #: The CUSUM statistic, and the event time when it last left 0.
        self.cusum = 0.0
        self._rise_began: float | None = None
        self._active = False
        #: Incidents counted since the start (reference included).
        self.incidents = 0
        #: The latest statistics, for the gauges.
        self.latest: dict[str, float] = {}
        #: Card and terminal -> event time of its latest fraud label.
        self._last_fraud: dict[str, float] = {}
        self._pruned_at = -math.inf
        #: The reference's incidents (missed or not) and when it began, until it is complete ...
        self._reference: list[bool] = []
        self._reference_began: float | None = None
        #: ... then the CUSUM's step for a missed and for a caught incident.
        self._steps: tuple[float, float] | None = None
        #: The last ``missed_fraud_reference`` incidents, for the recent share (dashboard, alarm).
        self._recent: deque[bool] = deque(maxlen=max(1, config.missed_fraud_reference))

    def alarm_keys(self) -> list[tuple[str, str]]:
        """Every (detector, subject) this can raise."""
        return [("missed_fraud", self.model)]

    def update(self, observation: LabelObservation) -> list[DriftEvent]:
        """A label (genuine labels are ignored): its score, card, terminal and event
        time."""
        at = observation.at
        if not observation.is_fraud or not self._new_incident(
            f"c:{observation.card}", f"t:{observation.terminal}", at
        ):
            return []
        missed = observation.score < self.threshold
        self.incidents += 1
        self._recent.append(missed)
        self.latest["missed_fraud_recent_share"] = sum(self._recent) / len(self._recent)
        if self._steps is None:
            self._take_reference(missed, at)
            return []
        up, down = self._steps
        if self.cusum == 0.0:
            self._rise_began = at
        self.cusum = max(0.0, self.cusum + (up if missed else down))
        threshold = self.config.missed_fraud_threshold
        self.latest["missed_fraud_cusum"] = self.cusum / threshold
        if self.cusum == 0.0:
            self._active = False
        if self.cusum <= threshold or self._active:
            return []
        self._active = True
        share = self.latest["missed_fraud_recent_share"]
        return [
            DriftEvent(
                "missed_fraud",
                self.model,
                share,
                len(self._recent),
                self._rise_began if self._rise_began is not None else at,
                at,
            )
        ]

    def _new_incident(self, card: str, terminal: str, at: float) -> bool:
        """Whether a fraud label of ``card`` at ``terminal`` starts an incident (and note it)."""
        window = self.config.missed_fraud_incident_days * 86400
        new = all(at - self._last_fraud.get(key, -math.inf) > window for key in (card, terminal))
        self._last_fraud[card] = self._last_fraud[terminal] = at
        if at - self._pruned_at > window:  # forget what is too old to matter, once a window
            self._last_fraud = {k: t for k, t in self._last_fraud.items() if at - t <= window}
            self._pruned_at = at
        return new

    def _take_reference(self, missed: bool, at: float) -> None:
        if self._reference_began is None:
            self._reference_began = at
        self._reference.append(missed)
        config = self.config
        if (
            len(self._reference) < config.missed_fraud_reference
            or at - self._reference_began < config.reference_days * 86400
        ):
            return
        n = len(self._reference)
        p0 = (sum(self._reference) + 0.5) / (n + 1)
        p1 = min(max(config.missed_fraud_ratio * p0, p0 + config.missed_fraud_rise), 0.99)
        phi = max(
            config.missed_fraud_dispersion,
            dispersion([float(m) for m in self._reference], max(2, n // 5)),
        )
        self._steps = (math.log(p1 / p0) / phi, math.log((1 - p1) / (1 - p0)) / phi)
        self.latest.update({"missed_fraud_reference_share": p0, "missed_fraud_cusum": 0.0})

    def refresh(self) -> None:
        """Take a new reference from the next incidents (after a promote: the share depends on
        the model)."""
        self._reference, self._reference_began, self._steps = [], None, None
        self.cusum, self._rise_began, self._active = 0.0, None, False
        self.latest["missed_fraud_cusum"] = 0.0  # no rise until the new reference
        self.latest.pop("missed_fraud_reference_share", None)
