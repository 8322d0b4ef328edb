"""Drift detectors: pure, fed with event times, never reading the clock.

One module per detector, River-style:

- :mod:`~monitoring.drift.data`: per feature, PSI and the two-sample KS statistic of the
  recent window against a reference window.
- :mod:`~monitoring.drift.kswin`: River's KSWIN per feature, on one transaction per few
  minutes of event time, against the week before.
- :mod:`~monitoring.drift.mean_shift`: a CUSUM on the means of blocks of a feature.
- :mod:`~monitoring.drift.prediction`: the same PSI and KS on the scores, and the share of
  scores at or above the operating threshold.
- :mod:`~monitoring.drift.labels`: the fraud rate among arrived labels and the median label
  delay, recent window against reference.
- :mod:`~monitoring.drift.concept`: ADWIN and Page-Hinkley (River) on the champion's
  prequential log loss, label by label.
- :mod:`~monitoring.drift.missed_fraud`: the share of fraud incidents the champion scored
  below its threshold, by a sequential test.

What they share is in :mod:`~monitoring.drift.base` (the alarm, the rule that raises it),
:mod:`~monitoring.drift.stats` (the statistics), :mod:`~monitoring.drift.windows` (the
samples compared), :mod:`~monitoring.drift.ert` (thresholds from an expected run-time) and
:mod:`~monitoring.drift.config` (windows and thresholds, light enough for the settings).

Each detector returns :class:`~monitoring.drift.base.DriftEvent` values when it alarms:
which detector, what drifted, how much, over which window, the event time of the change
(for window comparisons: the start of the current window, which holds it) and when it was
first seen (the event time of the observation that raised it). An alarm is raised once,
when the statistic crosses its threshold, and re-armed when it falls back below it.

The package imports nothing itself, so that importing its light config does not load the
detectors.
"""
