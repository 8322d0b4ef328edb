"""Label drift: the fraud rate among arrived labels, and the delay of fraud labels."""

from __future__ import annotations

import numpy as np

from monitoring.drift.base import Alarms, DriftEvent, LabelObservation
from monitoring.drift.config import DriftConfig
from monitoring.drift.stats import dispersion, wilson_lower
from monitoring.drift.windows import Windows


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
        self.windows = Windows(config, ["fraud"])
        frauds = config.label_delay_frauds
        self.delays = Windows(
            config.model_copy(
                update=dict(reference_size=frauds + frauds // 2, window_size=frauds, check_every=1)
            ),
            ["delay"],
        )
        self.alarms = Alarms()
        self.latest: dict[str, float] = {}
        #: Rate and dispersion of the reference: labels do not depend on the model, so
        #: their reference is never refreshed once taken.
        self._reference: tuple[float, float] | None = None

    def alarm_keys(self) -> list[tuple[str, str]]:
        """Every (detector, subject) this can raise."""
        return [("fraud_rate", "labels"), ("label_delay", "labels")]

    def update(self, observation: LabelObservation) -> list[DriftEvent]:
        """A label: fraud or not, and its delay."""
        at, is_fraud, delay_seconds = observation.at, observation.is_fraud, observation.delay
        events = []
        if is_fraud and self.delays.add({"delay": delay_seconds}, at):
            ref, cur = self.delays.reference["delay"], self.delays.current["delay"]
            ratio = float(np.median(cur)) / max(float(np.median(ref)), 1e-6)
            self.latest["label_delay_ratio"] = ratio
            events += self.alarms.check(
                "label_delay",
                "labels",
                ratio,
                self.config.label_delay_ratio,
                len(cur),
                self.delays.times[0],
                at,
            )
        if not self.windows.add({"fraud": float(is_fraud)}, at):
            return events
        ref_fraud, cur_fraud = self.windows.reference["fraud"], self.windows.current["fraud"]
        if self._reference is None:  # the reference is frozen until refresh()
            self._reference = (
                max(float(np.mean(ref_fraud)), 1e-6),
                dispersion(ref_fraud, self.config.fraud_rate_block),
            )
        rate_ref, phi = self._reference
        recent = wilson_lower(
            float(np.sum(cur_fraud)) / phi, int(len(cur_fraud) / phi), self.config.fraud_rate_z
        )
        rate_ratio = recent / rate_ref
        self.latest.update({"fraud_rate_ratio": rate_ratio, "fraud_rate_dispersion": phi})
        return events + self.alarms.check(
            "fraud_rate",
            "labels",
            rate_ratio,
            self.config.fraud_rate_ratio,
            len(cur_fraud),
            self.windows.times[0],
            at,
        )

    def refresh(self) -> None:
        """Nothing to do: labels do not depend on the model, so their reference is kept."""
