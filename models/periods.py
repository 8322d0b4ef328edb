"""Fraud metrics of a finished run, per day, per week and per period between change points.

A scorecard judges a whole replay after it ended: every transaction's score
(given when it happened) and its label (known by the end). Metrics are
grouped by the day of the *transaction*, as the public benchmark protocol
does; the per-day card precision@k is computed column-wise (polars), so a
stream of millions of transactions takes a second.

Examples
--------
>>> import numpy as np
>>> day = 86400.0
>>> times = np.array([0.0, 10, 20, 30, day, day + 1, day + 2, day + 3])
>>> scores = np.array([0.9, 0.1, 0.2, 0.3, 0.8, 0.7, 0.1, 0.2])
>>> truth = np.array([1, 0, 0, 0, 1, 0, 0, 1])
>>> cards = np.array(["a", "b", "c", "d", "a", "b", "c", "d"])
>>> run = Labelled(times, scores, truth, cards)
>>> [round(v, 3) for v in daily(run, threshold=0.5)["average_precision"]]
[1.0, 0.833]
>>> daily(run, threshold=0.5, k=1)["card_precision_at_k"]
[1.0, 1.0]
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from models.evaluation import average_precision, expected_cost, precision_recall, roc_auc

DAY = 86400.0


@dataclass(frozen=True)
class Labelled:
    """Every labelled transaction of a run: its time, score, truth and card (same order)."""

    times: np.ndarray
    scores: np.ndarray
    truth: np.ndarray
    cards: np.ndarray

    def where(self, keep: np.ndarray) -> Labelled:
        return Labelled(self.times[keep], self.scores[keep], self.truth[keep], self.cards[keep])

    def __len__(self) -> int:
        return len(self.times)


def summary(
    run: Labelled,
    threshold: float,
    k: int = 100,
    missed_fraud: float = 100.0,
    false_alarm: float = 5.0,
) -> dict[str, float]:
    """The metrics of every transaction of ``run`` together (card precision@k: the mean
    over its days).

    Parameters
    ----------
    run
        The labelled transactions.
    threshold
        A score at or above it is flagged (precision, recall, expected cost).
    k
        How many cards count per day in card precision@k.
    missed_fraud, false_alarm
        The cost of a fraud not flagged and of a genuine transaction flagged.

    Examples
    --------
    >>> import numpy as np
    >>> run = Labelled(np.arange(4.0), np.array([0.1, 0.4, 0.35, 0.8]),
    ...                np.array([0, 0, 1, 1]), np.array(["a", "b", "c", "d"]))
    >>> s = summary(run, threshold=0.5)
    >>> s["roc_auc"], round(s["average_precision"], 4), s["recall"], s["precision"]
    (0.75, 0.8333, 0.5, 1.0)
    """
    precision, recall = precision_recall(run.scores, run.truth, threshold)
    per_day = card_precision_per_day(run, k)
    return {
        "transactions": float(len(run)),
        "frauds": float(run.truth.sum()),
        "fraud_rate": float(run.truth.mean()) if len(run) else math.nan,
        "average_precision": average_precision(run.scores, run.truth),
        "roc_auc": roc_auc(run.scores, run.truth),
        "card_precision_at_k": float(np.nanmean(per_day)) if len(per_day) else math.nan,
        "precision": float(precision),
        "recall": float(recall),
        "expected_cost": expected_cost(run.scores, run.truth, threshold, missed_fraud, false_alarm),
    }


def card_precision_per_day(run: Labelled, k: int = 100) -> np.ndarray:
    """Per day (in time order): of the ``k`` cards with the highest score that day, the
    share that had a fraud that day (the benchmark's CP@k; on a tie, the card seen first
    that day goes first, as :func:`models.evaluation.card_precision_at_k` does).

    Parameters
    ----------
    run
        The labelled transactions.
    k
        How many cards count per day.
    """
    if not len(run):
        return np.array([])
    frame = pl.DataFrame(
        {
            "day": np.floor(run.times / DAY).astype(np.int64),
            "card": run.cards.astype(str),
            "score": run.scores,
            "fraud": run.truth.astype(bool),
        }
    ).with_row_index("seen")
    per_card = frame.group_by("day", "card").agg(
        pl.col("score").max(), pl.col("fraud").any(), pl.col("seen").min()
    )
    top = (
        per_card.sort(["day", "score", "seen"], descending=[False, True, False])
        .group_by("day", maintain_order=True)
        .head(k)
    )
    shares = top.group_by("day").agg(pl.col("fraud").mean()).sort("day")
    return shares["fraud"].to_numpy().astype(float)


def daily(
    run: Labelled,
    threshold: float,
    k: int = 100,
    missed_fraud: float = 100.0,
    false_alarm: float = 5.0,
) -> dict[str, list[float]]:
    """Per day of transaction time: ``day`` (its start, epoch seconds) and each metric
    of :func:`summary` (NaN where undefined: a day without fraud has no AP).

    Parameters
    ----------
    run
        The labelled transactions.
    threshold
        A score at or above it is flagged (precision, recall, expected cost).
    k
        How many cards count per day in card precision@k.
    missed_fraud, false_alarm
        The cost of a fraud not flagged and of a genuine transaction flagged.
    """
    return _grouped(run, np.floor(run.times / DAY) * DAY, threshold, k, missed_fraud, false_alarm)


def weekly(
    run: Labelled,
    start: float,
    threshold: float,
    k: int = 100,
    missed_fraud: float = 100.0,
    false_alarm: float = 5.0,
) -> dict[str, list[float]]:
    """As :func:`daily`, per 7 days counted from ``start``'s midnight.

    Parameters
    ----------
    run
        The labelled transactions.
    start
        A time (seconds): the weeks begin at the start of its day.
    threshold
        A score at or above it is flagged (precision, recall, expected cost).
    k
        How many cards count per day in card precision@k.
    missed_fraud, false_alarm
        The cost of a fraud not flagged and of a genuine transaction flagged.
    """
    origin = math.floor(start / DAY) * DAY
    return _grouped(
        run,
        origin + np.floor((run.times - origin) / (7 * DAY)) * 7 * DAY,
        threshold,
        k,
        missed_fraud,
        false_alarm,
    )


def _grouped(
    run: Labelled,
    keys: np.ndarray,
    threshold: float,
    k: int,
    missed_fraud: float,
    false_alarm: float,
) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"day": []}
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_keys)) + 1]
    ends = np.r_[starts[1:], len(sorted_keys)]
    for begin, end in zip(starts, ends, strict=True):
        if begin == end:
            continue
        part = run.where(order[begin:end])
        out["day"].append(float(sorted_keys[begin]))
        for name, value in summary(part, threshold, k, missed_fraud, false_alarm).items():
            out.setdefault(name, []).append(value)
    return out


def periods(
    run: Labelled,
    changes: Sequence[float],
    threshold: float,
    k: int = 100,
    missed_fraud: float = 100.0,
    false_alarm: float = 5.0,
) -> list[dict[str, float]]:
    """:func:`summary` of each period between change points (``start``/``end`` times,
    ``-inf``/``inf`` at the ends), before the first and after the last.

    Parameters
    ----------
    run
        The labelled transactions.
    changes
        The change points (transaction times, seconds, in any order).
    threshold
        A score at or above it is flagged (precision, recall, expected cost).
    k
        How many cards count per day in card precision@k.
    missed_fraud, false_alarm
        The cost of a fraud not flagged and of a genuine transaction flagged.
    """
    bounds = [-math.inf, *sorted(changes), math.inf]
    out = []
    for begin, end in itertools.pairwise(bounds):
        part = run.where((run.times >= begin) & (run.times < end))
        out.append(
            {"start": begin, "end": end, **summary(part, threshold, k, missed_fraud, false_alarm)}
        )
    return out


def recovery_days(
    days: Sequence[float],
    values: Sequence[float],
    change: float,
    before_days: int = 7,
    share: float = 0.9,
    smooth: int = 3,
) -> dict[str, float]:
    """How a daily metric fared after ``change``: its mean over the ``before_days`` days
    before, its lowest ``smooth``-day mean after, and the days from the change until that
    mean is back to ``share`` of the level before (NaN: not within the run).

    Parameters
    ----------
    days, values
        The daily metric: each day's start (seconds) and its value (NaN: undefined).
    change
        When the change came (seconds).
    before_days
        How many days before ``change`` the level before is the mean of.
    share
        The share of the level before that the smoothed metric must be back to.
    smooth
        How many days each mean after the change spans.

    Examples
    --------
    >>> days = [float(d * 86400) for d in range(12)]
    >>> ap = [0.6] * 5 + [0.2, 0.3, 0.45, 0.6, 0.6, 0.6, 0.6]
    >>> r = recovery_days(days, ap, change=5 * 86400, before_days=5, smooth=2)
    >>> r["before"], r["lowest"], r["days"]
    (0.6, 0.25, 4.0)
    """
    t, v = np.asarray(days, dtype=float), np.asarray(values, dtype=float)
    prior = v[(t < change) & (t >= change - before_days * DAY)]
    prior = prior[~np.isnan(prior)]
    after_t, after_v = t[t >= change], v[t >= change]
    out = {
        "before": float(prior.mean()) if len(prior) else math.nan,
        "lowest": math.nan,
        "days": math.nan,
    }
    if not len(prior) or len(after_v) < smooth:
        return out
    means = np.array(
        [
            np.nanmean(after_v[i : i + smooth])
            if not np.isnan(after_v[i : i + smooth]).all()
            else math.nan
            for i in range(len(after_v) - smooth + 1)
        ]
    )
    out["lowest"] = float(np.nanmin(means)) if not np.isnan(means).all() else math.nan
    back = np.flatnonzero(means >= share * out["before"])
    # Recovered once the smoothed level is back, after it first dipped below it.
    dipped = np.flatnonzero(means < share * out["before"])
    if not len(dipped):
        out["days"] = 0.0
        return out
    later = back[back > dipped[0]]
    if len(later):
        out["days"] = float((after_t[later[0] + smooth - 1] - change) / DAY)
    return out
