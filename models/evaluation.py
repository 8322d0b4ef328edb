"""Prequential fraud metrics: every score was recorded before its label arrived.

Pure numpy, no I/O. :class:`Prequential` collects (score, truth, card,
transaction time, label time) as labels arrive and reports, over the last
``window`` labels and since the start:

- ROC AUC (Mann-Whitney, ties counted half) and average precision (PR AUC,
  step-wise over distinct thresholds, as scikit-learn computes it);
- precision and recall at the operating ``threshold``;
- expected cost per transaction: ``cost_missed_fraud`` per fraud scored below
  the threshold plus ``cost_false_alarm`` per genuine one at or above it;
- card precision@k per day (over the window): of the ``k`` cards with the
  highest score that day, the share that really had a fraud that day (mean
  over days);
- the label delay distribution (median, 90th and 99th percentile).

Examples
--------
>>> import numpy as np
>>> roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]))
0.75
>>> round(average_precision(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])), 4)
0.8333
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

DAY = 86400.0


def roc_auc(scores: np.ndarray, truth: np.ndarray, order: np.ndarray | None = None) -> float:
    """Probability that a random fraud scores above a random genuine (ties: half); NaN
    without both classes.

    Parameters
    ----------
    scores, truth
        The scores (higher: more likely fraud) and, in the same order, the labels (1: fraud,
        0: genuine).
    order
        The scores' stable ascending argsort, if already known (None: computed).
    """
    positives = int(truth.sum())
    negatives = len(truth) - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    ranks = _average_ranks(scores, order)
    return float(
        (ranks[truth.astype(bool)].sum() - positives * (positives + 1) / 2)
        / (positives * negatives)
    )


def average_precision(
    scores: np.ndarray, truth: np.ndarray, order: np.ndarray | None = None
) -> float:
    """Sum over distinct thresholds of (recall gained) x (precision there); NaN without
    fraud.

    Parameters
    ----------
    scores, truth
        The scores (higher: more likely fraud) and, in the same order, the labels (1: fraud,
        0: genuine).
    order
        The scores' stable ascending argsort, if already known (None: computed). Reversed,
        ties come in another order: only where each tie ends counts.
    """
    positives = int(truth.sum())
    if positives == 0:
        return float("nan")
    order = np.argsort(-scores, kind="stable") if order is None else order[::-1]
    s, t = scores[order], truth[order].astype(float)
    last_of_tie = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    hits = np.cumsum(t)[last_of_tie]
    seen = last_of_tie + 1
    precision = hits / seen
    recall_gain = np.diff(np.r_[0.0, hits]) / positives
    return float((recall_gain * precision).sum())


def precision_recall(
    scores: np.ndarray, truth: np.ndarray, threshold: float
) -> tuple[float, float]:
    """Precision and recall of flagging ``score >= threshold`` (NaN: nothing flagged, no
    fraud).

    Parameters
    ----------
    scores, truth
        The scores (higher: more likely fraud) and, in the same order, the labels (1: fraud,
        0: genuine).
    threshold
        A score at or above it is flagged.
    """
    flagged = scores >= threshold
    true_positives = float((flagged & (truth == 1)).sum())
    precision = true_positives / flagged.sum() if flagged.any() else float("nan")
    recall = true_positives / truth.sum() if truth.any() else float("nan")
    return precision, recall


def expected_cost(
    scores: np.ndarray, truth: np.ndarray, threshold: float, missed_fraud: float, false_alarm: float
) -> float:
    """Mean cost per transaction of flagging ``score >= threshold``.

    Parameters
    ----------
    scores, truth
        The scores (higher: more likely fraud) and, in the same order, the labels (1: fraud,
        0: genuine).
    threshold
        A score at or above it is flagged.
    missed_fraud
        The cost of a fraud not flagged.
    false_alarm
        The cost of a genuine transaction flagged.
    """
    if len(scores) == 0:
        return float("nan")
    flagged = scores >= threshold
    missed = (~flagged & (truth == 1)).sum()
    alarms = (flagged & (truth == 0)).sum()
    return float((missed * missed_fraud + alarms * false_alarm) / len(scores))


def card_precision_at_k(
    scores: np.ndarray, truth: np.ndarray, cards: np.ndarray, times: np.ndarray, k: int = 100
) -> float:
    """Mean over days of the share of that day's top-``k`` cards (by their highest
    score that day) that had a fraud that day.

    Parameters
    ----------
    scores, truth
        The scores (higher: more likely fraud) and, in the same order, the labels (1: fraud,
        0: genuine).
    cards
        Each transaction's card id.
    times
        Each transaction's time in seconds (a day: a multiple of 86,400 to the next).
    k
        How many cards count per day.
    """
    days = np.floor(times / DAY).astype(np.int64)
    shares = []
    for day in np.unique(days):
        on = days == day
        best: dict[object, float] = {}
        fraud: dict[object, bool] = {}
        for card, score, is_fraud in zip(cards[on], scores[on], truth[on], strict=True):
            best[card] = max(best.get(card, -1.0), float(score))
            fraud[card] = fraud.get(card, False) or bool(is_fraud)
        top = sorted(best, key=lambda c: -best[c])[:k]
        shares.append(sum(fraud[c] for c in top) / len(top))
    return float(np.mean(shares)) if shares else float("nan")


def _average_ranks(values: np.ndarray, order: np.ndarray | None = None) -> np.ndarray:
    if order is None:
        order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    sorted_values = values[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_values)) + 1]
    ends = np.r_[starts[1:], len(values)]
    average = (starts + ends + 1) / 2.0  # ranks are 1-based
    ranks[order] = np.repeat(average, ends - starts)
    return ranks


@dataclass
class Prequential:
    """Collects labelled scores as labels arrive; reports the metrics above."""

    window: int = 10_000
    threshold: float = 0.5
    cost_missed_fraud: float = 100.0
    cost_false_alarm: float = 5.0
    k: int = 100
    #: At most this many labels are kept ("since start" means within them).
    keep: int = 200_000
    #: Score, truth, transaction time and label delay of each label kept, in the first
    #: ``_count`` rows (numpy: a report reads them without converting lists).
    _rows: np.ndarray = field(default_factory=lambda: np.empty((1024, 4)), repr=False)
    _count: int = 0
    _cards: list[str] = field(default_factory=list)
    #: The last report and how many labels had been recorded when it was made.
    _cached: tuple[int, dict[str, float]] | None = field(default=None, repr=False)
    _recorded: int = 0

    def record(
        self, score: float, is_fraud: bool, card_id: str, txn_time: float, label_time: float
    ) -> None:
        """Keep one label with the score its transaction got (the last ``keep``).

        Parameters
        ----------
        score
            The score the transaction got when it happened.
        is_fraud
            The label.
        card_id
            The transaction's card.
        txn_time
            The transaction's event time (seconds).
        label_time
            When the label arrived (seconds, the same clock): the label's delay is
            ``label_time - txn_time``.

        Examples
        --------
        >>> q = Prequential(keep=10)
        >>> for i in range(25):
        ...     q.record(i / 25, i % 4 == 0, "c", float(i), float(i) + 1)
        >>> len(q), q.report()["labels"], q.report()["frauds"]
        (10, 10.0, 3.0)
        """
        if self._count == len(self._rows):
            grown = np.empty((2 * len(self._rows), 4))
            grown[: self._count] = self._rows
            self._rows = grown
        self._rows[self._count] = (score, is_fraud, txn_time, label_time - txn_time)
        self._count += 1
        self._cards.append(card_id)
        self._recorded += 1
        if self._count > self.keep * 1.2:  # all but the last ``keep`` go
            self._rows[: self.keep] = self._rows[self._count - self.keep : self._count]
            del self._cards[: self._count - self.keep]
            self._count = self.keep

    def __len__(self) -> int:
        return self._count

    @property
    def _scores(self) -> np.ndarray:
        return self._rows[: self._count, 0]

    @property
    def _truth(self) -> np.ndarray:
        return self._rows[: self._count, 1].astype(np.int64)

    def average_precision_last(self, n: int) -> float:
        """Average precision over the last ``n`` labels."""
        return average_precision(self._scores[-n:], self._truth[-n:])

    def recent_report(self, share: float = 0.01) -> dict[str, float]:
        """:meth:`report`, made again only once new labels amount to ``share`` of those
        kept (every label while few are kept; every 2,000 of 200,000): what snapshots and
        gauges show, without sorting every kept label at each snapshot.

        >>> q = Prequential(window=10)
        >>> for i in range(300):
        ...     q.record(i / 300, i % 5 == 0, "c", float(i), float(i) + 1)
        >>> first = q.recent_report(share=0.01)
        >>> q.record(0.9, True, "c", 300.0, 301.0)
        >>> q.recent_report(share=0.01) is first  # 1 new label: less than 1 % of 301
        True
        >>> for i in range(3):
        ...     q.record(0.1, False, "c", 301.0 + i, 302.0 + i)
        >>> q.recent_report(share=0.01) is first, q.recent_report()["labels"]
        (False, 304.0)
        """
        cached = self._cached
        if cached is not None and self._recorded - cached[0] < max(1, int(len(self) * share)):
            return cached[1]
        report = self.report()
        self._cached = (self._recorded, report)
        return report

    def report(self, since: float | None = None) -> dict[str, float]:
        """Metrics over the last ``window`` labels and since the start (or since ``since``,
        a transaction time)."""
        rows = self._rows[: self._count]
        scores, truth, times = rows[:, 0], rows[:, 1].astype(np.int64), rows[:, 2]
        recent = slice(-self.window, None)
        if since is None:  # only the window's cards are read (card precision): not all kept
            cards = np.array(self._cards[recent], dtype=object)
        else:
            keep = times >= since
            scores, truth, times = scores[keep], truth[keep], times[keep]
            cards = np.array(self._cards, dtype=object)[keep][recent]
        out: dict[str, float] = {
            "labels": float(len(scores)),
            "frauds": float(truth.sum()) if len(truth) else 0.0,
        }
        for name, part in (("window", slice(-self.window, None)), ("all", slice(None))):
            s, t = scores[part], truth[part]
            precision, recall = precision_recall(s, t, self.threshold)
            order = np.argsort(s, kind="stable")  # one sort for both
            out[f"roc_auc_{name}"] = roc_auc(s, t, order)
            out[f"average_precision_{name}"] = average_precision(s, t, order)
            out[f"precision_{name}"] = precision
            out[f"recall_{name}"] = recall
            out[f"expected_cost_{name}"] = expected_cost(
                s, t, self.threshold, self.cost_missed_fraud, self.cost_false_alarm
            )
        out["card_precision_at_k_window"] = card_precision_at_k(  # (a per-day loop)
            scores[recent], truth[recent], cards, times[recent], self.k
        )
        delays = rows[:, 3] / DAY
        for q in (50, 90, 99):
            out[f"label_delay_p{q}_days"] = (
                float(np.percentile(delays, q)) if len(delays) else float("nan")
            )
        return out
