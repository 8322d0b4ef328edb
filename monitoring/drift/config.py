"""The drift detectors' windows and thresholds, light enough for the settings to import.

Examples
--------
>>> DriftConfig().psi_threshold
0.1
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from features.vector import untagged


class DriftConfig(BaseModel):
    """Windows and thresholds, each with its bounds: the one definition of the settings
    section ``drift`` (``stream.settings.DriftSettings`` adds what the worker does around
    the detectors)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Observations in the reference window (filled first, then frozen until refreshed).
    reference_size: int = Field(5000, ge=10)
    #: ... and at least this many days of event time, sampled uniformly down to
    #: ``reference_size``: traffic has a weekly cycle, and a reference of a few days would
    #: make the weekday look like drift (data and prediction drift; 0: the first
    #: ``reference_size`` observations).
    reference_days: float = Field(7.0, ge=0)
    #: Observations in the sliding current window.
    window_size: int = Field(2000, ge=10)
    #: Check every this many observations once the windows are full.
    check_every: int = Field(250, ge=1)
    #: PSI above this is drift (by convention 0.1 is a moderate shift, 0.25 a major one;
    #: stationary simulated traffic stays near 0.01).
    psi_threshold: float = Field(0.1, gt=0)
    #: KS statistic above this is drift (stationary traffic: about 0.04).
    ks_threshold: float = Field(0.12, gt=0, le=1)
    #: After an alarm, PSI and KS (of features and of scores) alarm again only once their
    #: statistic has been back under this share of its threshold: on data that stays
    #: changed they wander around the threshold and would page at each crossing.
    rearm_share: float = Field(0.5, gt=0, le=1)
    #: Data drift raises one alarm per episode and statistic (PSI, KS): while one feature
    #: is in alarm, others crossing are the same change spreading to the features built
    #: on it, and raise none (their gauges still show them).
    alarm_per_episode: bool = True
    #: Bins for PSI (quantiles of the reference).
    bins: int = Field(10, ge=2, le=100)
    #: Fraud rate: an alarm when the recent rate is this many times the reference ...
    fraud_rate_ratio: float = Field(2.5, gt=1)
    #: ... with this confidence: the recent rate is the lower end of its Wilson interval
    #: (z = 3.09: one-sided 99.9%) ...
    fraud_rate_z: float = Field(3.09, ge=0)
    #: ... on counts divided by the reference's dispersion between blocks of this many labels
    #: (frauds cluster in incidents: see ``monitoring.drift.stats.dispersion``).
    fraud_rate_block: int = Field(500, ge=10)
    #: Label delay: an alarm when the median delay of the last ``label_delay_frauds`` fraud
    #: labels is this many times that of the first 1.5 times as many after the warm-up
    #: (genuine labels come at a fixed maturity and would hide a change; with log-normal
    #: chargeback delays, 40 against 60 pages on steady labels well under 1% of the time).
    label_delay_ratio: float = Field(2.0, gt=1)
    label_delay_frauds: int = Field(40, ge=5)
    #: River's KSWIN (``monitoring.drift.kswin.SampledKSWIN``) watches these features: by
    #: default those that carry no tag of :data:`features.vector.TAGS` (not cyclic, not slow,
    #: free of the weekly volume cycle, and not almost always 0): the amount, the card's mean
    #: amount over a day and its distance from where it usually pays ...
    kswin_features: tuple[str, ...] = untagged("cyclic", "slow", "volume", "sparse")
    #: ... taking the first transaction of each slot of this many seconds of event time
    #: (0: off) ...
    kswin_every: float = Field(300.0, ge=0)
    #: ... into a sliding window of this many samples (8 days), compares the newest
    #: ``kswin_stat_size`` (the last day) with as many drawn from the rest ...
    kswin_window: int = Field(2304, ge=20)
    kswin_stat_size: int = Field(288, ge=10)
    #: ... and alarms when the KS test's p-value is at most this (and the statistic above
    #: 0.1). It tests 288 times a day, drawing a new sample each time: on steady simulated
    #: traffic the smallest p-value of a month was 1.9e-6 (``docs/drift.md``).
    kswin_alpha: float = Field(1e-7, gt=0, lt=1)
    #: ADWIN sensitivity and Page-Hinkley threshold on the log loss (calibrated with
    #: ``fraudstream bench drift``: fraud comes in bursts, and more sensitive settings
    #: page on a burst in steady traffic) ...
    adwin_delta: float = Field(1e-5, gt=0, lt=1)
    #: ADWIN sees the mean loss of blocks of this many labels (frauds come in bursts).
    adwin_block: int = Field(25, ge=1)
    #: Page-Hinkley's threshold, set by hand (calibrated with ``fraudstream bench drift``);
    #: 0: derived from its share of ``ert_days`` (``monitoring.drift.ert``) on the losses of the
    #: first ``reference_days`` of labels after the warm-up, during which it is silent.
    #: Not the default: a week of reference labels lacks the multi-day fraud waves of
    #: later weeks, and the derived threshold (38 on a bench seed) pages on 6 of 10 steady
    #: seeds, against 3 for this one (``docs/drift.md``).
    page_hinkley_threshold: float = Field(100.0, ge=0)
    #: Expected event time, in days, between false alarms of the whole monitor on steady
    #: data. It is shared by ``ert_detectors`` detector families (data drift, KSWIN, mean
    #: shift, prediction, label, concept, missed fraud): a detector whose threshold is
    #: derived by simulation (``monitoring.drift.ert``) gets ``ert_days * ert_detectors`` ...
    ert_days: float = Field(30.0, gt=0, le=36500)
    ert_detectors: int = Field(7, ge=1, le=100)
    #: ... from this many simulated runs, each made of blocks of this many hours of the
    #: reference drawn at random (longer blocks keep longer bursts together).
    ert_runs: int = Field(200, ge=20, le=100_000)
    ert_block_hours: float = Field(1.0, gt=0, le=24 * 30)
    #: ... whose probabilities are clipped to [loss_clip, 1 - loss_clip].
    loss_clip: float = Field(0.05, gt=0, lt=0.5)
    #: Missed frauds (``monitoring.drift.missed_fraud``): a fraud label starts an incident
    #: when neither its card nor its terminal had a fraud label in this many days (a skimmed
    #: terminal or a stolen card otherwise counts a dozen times) ...
    missed_fraud_incident_days: float = Field(1.0, ge=0)
    #: ... the reference is the first this many incidents after the warm-up (and at least
    #: ``reference_days``) ...
    missed_fraud_reference: int = Field(50, ge=10)
    #: ... the CUSUM tests a rise of the share of missed incidents from the reference's p0 to
    #: max(ratio * p0, p0 + rise) ...
    missed_fraud_ratio: float = Field(3.0, gt=1)
    missed_fraud_rise: float = Field(0.2, gt=0, lt=1)
    #: ... its steps divided by at least this dispersion (incidents close in time are not
    #: independent) ...
    missed_fraud_dispersion: float = Field(3.0, ge=1)
    #: ... and alarms above this: 1.5 times the largest sum on steady labels (5.04, over 10
    #: steady seeds at 1,000 customers and the days before the change in every other
    #: scenario, replayed through the monitor); ``docs/drift.md`` gives the search and the
    #: delays.
    missed_fraud_threshold: float = Field(7.5, gt=0)
    #: Mean shift (``monitoring.drift.mean_shift``): a two-sided CUSUM on the means of blocks of
    #: this many transactions of each of these features (relative to each card's own
    #: history, so the spread between cardholders does not hide a small change) ...
    mean_shift_features: tuple[str, ...] = ("card_amount_zscore_30d",)
    mean_shift_block: int = Field(250, ge=10)
    #: ... values clipped to +-this first ...
    mean_shift_clip: float = Field(5.0, gt=0)
    #: ... tuned to a shift of twice this many (reference) standard deviations of a block ...
    mean_shift_k: float = Field(0.5, ge=0)
    #: ... alarming above this (0: derived from the features' share of ``ert_days``).
    mean_shift_threshold: float = Field(0.0, ge=0)
    #: Prediction drift rescores this many vectors of each window with the current model.
    prediction_sample: int = Field(1000, ge=10)
    #: Labels the champion's lineage must have learned before the prediction, label and
    #: concept detectors start (and take their references): before that the model is still
    #: finding its feet, and only fast chargebacks have arrived, genuine labels not yet.
    warm_up: int = Field(10_000, ge=0)
    #: No detector starts before the feature state holds this many days of history (its
    #: longest window: until then the 30-day features and each card's usual location are
    #: still filling, and vectors and scores move by that alone).
    state_maturity_days: float = Field(30.0, ge=0)
    #: The detectors see records in event-time order across partitions (a worker catching
    #: up reads its partitions days apart: see ``monitoring.ordering``), holding at most
    #: this many back; beyond, the oldest go early.
    order_max_held: int = Field(20_000, ge=0)
