"""Alarms judged against the ground truth: detected or missed, how late, how many false.

As CapyMOA evaluates drift detectors: an alarm at or after a change point
and at most ``max_delay`` seconds later (and before the next change) is a
true alarm for it; any other alarm is false. Per detector: recall (changes
detected), precision (true alarms among its alarms), the mean delay of its
first true alarm per change, and false alarms per 30 days of event time; of
the false ones, how many came on steady data (before any change).

Examples
--------
>>> day = 86400.0
>>> alarms = [Alarm("psi", "amount", 10 * day + 3600), Alarm("psi", "amount", 3 * day),
...           Alarm("kswin", "amount", 16 * day)]
>>> result = judge(alarms, changes=[10 * day], start=0.0, end=20 * day, max_delay=3 * day)
>>> psi = result["detectors"]["psi"]
>>> psi["recall"], psi["precision"], psi["mean_delay_hours"], psi["false_alarms"]
(1.0, 0.5, 1.0, 1)
>>> result["detectors"]["kswin"]["recall"], result["any"]["recall"]
(0.0, 1.0)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

DAY = 86400.0


@dataclass(frozen=True, slots=True)
class Alarm:
    """One alarm of one detector on one subject, at an event time."""

    detector: str
    subject: str
    at: float


def _matched(at: float, changes: Sequence[float], max_delay: float) -> int | None:
    """The index of the change an alarm at ``at`` belongs to, or None (a false alarm)."""
    for i, change in enumerate(changes):
        following = changes[i + 1] if i + 1 < len(changes) else math.inf
        if change <= at < following and at - change <= max_delay:
            return i
    return None


def _judge_one(
    alarms: Sequence[Alarm], changes: Sequence[float], days: float, max_delay: float
) -> dict[str, Any]:
    first: dict[int, float] = {}
    false = steady = 0
    for alarm in sorted(alarms, key=lambda a: a.at):
        i = _matched(alarm.at, changes, max_delay)
        if i is None:
            false += 1
            steady += not changes or alarm.at < changes[0]
        else:
            first.setdefault(i, alarm.at - changes[i])
    delays = list(first.values())
    return {
        "alarms": len(alarms),
        "false_alarms": false,
        #: ... of which before any change (on steady data); the rest came after a change,
        #: later than the maximum delay (late, or repeated while the data stays changed).
        "steady_false_alarms": steady,
        "false_alarms_per_30_days": false / days * 30 if days > 0 else math.nan,
        "detected": sorted(first),
        "recall": len(first) / len(changes) if changes else math.nan,
        "precision": (len(alarms) - false) / len(alarms) if alarms else math.nan,
        "mean_delay_hours": sum(delays) / len(delays) / 3600 if delays else math.nan,
        "delays_hours": {str(i): d / 3600 for i, d in sorted(first.items())},
    }


def judge(
    alarms: Iterable[Alarm],
    changes: Sequence[float],
    start: float,
    end: float,
    max_delay: float = 3 * DAY,
) -> dict[str, Any]:
    """Every detector's alarms (grouped by detector, all subjects together) and all of
    them together (``any``) against the ``changes`` (event times) of a run from ``start``
    to ``end``.

    Parameters
    ----------
    alarms
        Every alarm of the run.
    changes
        The event times (seconds) of the true change points, in any order.
    start, end
        The event times (seconds) the run covers (for false alarms per 30 days).
    max_delay
        The latest (seconds after a change) an alarm still detects it.
    """
    alarms = list(alarms)
    changes = sorted(changes)
    days = (end - start) / DAY
    by_detector: dict[str, list[Alarm]] = {}
    for alarm in alarms:
        by_detector.setdefault(alarm.detector, []).append(alarm)
    return {
        "max_delay_hours": max_delay / 3600,
        "days": days,
        "detectors": {
            name: _judge_one(found, changes, days, max_delay)
            for name, found in sorted(by_detector.items())
        },
        "any": _judge_one(alarms, changes, days, max_delay),
    }


def per_change(
    alarms: Iterable[Alarm], changes: Sequence[float], max_delay: float = 3 * DAY
) -> list[dict[str, Any]]:
    """For each change: detected or not, the first true alarm (detector, subject, delay)
    and how many detectors fired for it.

    Parameters
    ----------
    alarms
        Every alarm of the run.
    changes
        The event times (seconds) of the true change points, in any order (the result
        follows them sorted).
    max_delay
        The latest (seconds after a change) an alarm still detects it.

    Examples
    --------
    >>> one = per_change([Alarm("psi", "x", 5.0), Alarm("ks", "x", 7.0)], [4.0, 100.0], 50.0)[0]
    >>> one["detected"], one["first"]["detector"], one["detectors"]
    (True, 'psi', ['ks', 'psi'])
    """
    changes = sorted(changes)
    out: list[dict[str, Any]] = [
        {"detected": False, "first": None, "detectors": []} for _ in changes
    ]
    for alarm in sorted(alarms, key=lambda a: a.at):
        i = _matched(alarm.at, changes, max_delay)
        if i is None:
            continue
        entry = out[i]
        if entry["first"] is None:
            entry["detected"] = True
            entry["first"] = {
                "detector": alarm.detector,
                "subject": alarm.subject,
                "delay_hours": (alarm.at - changes[i]) / 3600,
            }
        if alarm.detector not in entry["detectors"]:
            entry["detectors"] = sorted([*entry["detectors"], alarm.detector])
    return out
