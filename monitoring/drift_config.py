"""The drift detectors' windows and thresholds, light enough for the settings to import.

Examples
--------
>>> DriftConfig().psi_threshold
0.1
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DriftConfig:
    """Windows and thresholds (settings section ``drift``)."""

    #: Observations in the reference window (filled first, then frozen until refreshed).
    reference_size: int = 5000
    #: Observations in the sliding current window.
    window_size: int = 2000
    #: Check every this many observations once the windows are full.
    check_every: int = 250
    #: PSI above this is drift (by convention 0.1 is a moderate shift, 0.25 a major one;
    #: stationary simulated traffic stays near 0.01).
    psi_threshold: float = 0.1
    #: KS statistic above this is drift (stationary traffic: about 0.04).
    ks_threshold: float = 0.12
    #: Bins for PSI (quantiles of the reference).
    bins: int = 10
    #: Fraud rate: an alarm when the recent rate is this many times the reference.
    fraud_rate_ratio: float = 2.0
    #: Label delay: an alarm when the recent median delay is this many times the reference.
    label_delay_ratio: float = 2.0
    #: ADWIN sensitivity and Page-Hinkley threshold on the log loss.
    adwin_delta: float = 0.002
    page_hinkley_threshold: float = 50.0
    #: Labels before concept-drift detectors may alarm.
    warm_up: int = 1000
