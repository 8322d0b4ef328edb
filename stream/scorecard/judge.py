"""The scorecard of a replayed stream: how well the models ranked fraud, what the
detectors said and when, judged against the scenario's change points.

:func:`scorecard` turns an :class:`~stream.scorecard.embedded.EmbeddedResult`, the
truth of every transaction and the manifest's change points into one JSON
document (``scorecard.json``); :func:`summary_lines` prints its gist. Every
metric is prequential: a score was given when its transaction happened,
before the model could learn its label.

Examples
--------
>>> from features.events import Label, Transaction
>>> from stream.scorecard.embedded import EmbeddedOptions, run_embedded
>>> events = [Transaction(f"t{i}", f"c{i % 7}", "p", 10.0 + i % 5, i * 600.0) for i in range(300)]
>>> truth = {f"t{i}": i % 50 == 0 for i in range(300)}
>>> labels = [Label(t, f, 300 * 600.0) for t, f in truth.items()]
>>> result = run_embedded(events + labels, EmbeddedOptions(drift=None, freeze_after_days=None))
>>> card = scorecard(result, truth, ScorecardOptions(warm_up_days=0))
>>> card["models"]["hybrid_gradient_boosting"]["overall"]["frauds"]
6.0
>>> card["run"]["labels_learned"]
300
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from features.vector import FEATURE_NAMES
from models.evaluation import DAY
from models.periods import Labelled, daily, periods, recovery_days, summary, weekly
from models.signal import feature_signal
from monitoring.drift.base import DriftEvent
from monitoring.judging import Alarm, judge, per_change
from stream.scorecard.options import EmbeddedResult

if TYPE_CHECKING:
    from stream.settings import ModelSettings


@dataclass(frozen=True)
class ScorecardOptions:
    """How the run is judged."""

    threshold: float = 0.5
    k: int = 100
    cost_missed_fraud: float = 100.0
    cost_false_alarm: float = 5.0
    #: An alarm counts for a change only within this long after it (seconds).
    max_delay: float = 3 * DAY
    #: ``after_warm_up`` leaves out transactions of the first this many days.
    warm_up_days: float = 7.0

    @classmethod
    def of(
        cls, model: ModelSettings, max_delay: float = 3 * DAY, warm_up_days: float = 7.0
    ) -> ScorecardOptions:
        """The worker's threshold and costs (settings section ``model``).

        Parameters
        ----------
        model
            The settings section ``model``: threshold and the two costs.
        max_delay
            How long after a change an alarm counts for it (seconds).
        warm_up_days
            Days at the start that ``after_warm_up`` leaves out.
        """
        return cls(
            threshold=model.threshold,
            cost_missed_fraud=model.cost_missed_fraud,
            cost_false_alarm=model.cost_false_alarm,
            max_delay=max_delay,
            warm_up_days=warm_up_days,
        )


def iso(seconds: float) -> str | None:
    if not math.isfinite(seconds):
        return None
    return datetime.fromtimestamp(seconds, tz=UTC).isoformat().replace("+00:00", "Z")


def _clean(value: Any) -> Any:
    """JSON has no NaN or infinity: they become null."""
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    return value


def labelled(result: EmbeddedResult, truth: Mapping[str, bool], model: str) -> Labelled:
    """The scored transactions of ``model`` whose truth is known.

    Parameters
    ----------
    result
        The run.
    truth
        Whether each transaction (by id) is a fraud.
    model
        The name of the scores judged (a key of ``result.scores``).
    """
    known = (
        np.array([truth.get(t, -1) for t in result.txn_ids], dtype=np.int8)
        if result.txn_ids
        else np.array([], dtype=np.int8)
    )
    scores = result.scores[model]
    keep = (known >= 0) & ~np.isnan(scores)
    return Labelled(
        result.times[keep], scores[keep], known[keep].astype(np.int64), result.cards[keep]
    )


def _model_card(
    run: Labelled, start: float, changes: Sequence[float], options: ScorecardOptions
) -> dict[str, Any]:
    args = (options.threshold, options.k, options.cost_missed_fraud, options.cost_false_alarm)
    per_day = daily(run, *args)
    warm = run.where(run.times >= start + options.warm_up_days * DAY)
    return {
        "overall": summary(run, *args),
        "after_warm_up": summary(warm, *args),
        "periods": periods(run, changes, *args),
        "weekly": weekly(run, start, *args),
        "daily": per_day,
        "recovery": [
            recovery_days(per_day["day"], per_day["average_precision"], change)
            for change in changes
        ]
        if per_day["day"]
        else [],
    }


def _features(result: EmbeddedResult, truth: Mapping[str, bool], since: float) -> dict[str, Any]:
    """Each feature's own signal over labelled transactions after the warm-up (when the
    run kept its vectors)."""
    if result.vectors is None:
        return {}
    known = np.array([truth.get(t, -1) for t in result.txn_ids], dtype=np.int8)
    keep = (known >= 0) & (result.times >= since) & ~np.isnan(result.vectors[:, 0])
    return feature_signal(result.vectors[keep], known[keep].astype(np.int64), FEATURE_NAMES)


def scorecard(
    result: EmbeddedResult,
    truth: Mapping[str, bool],
    options: ScorecardOptions,
    change_points: Sequence[Mapping[str, Any]] = (),
    source: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The whole scorecard as a JSON-ready dict (NaN as null).

    Parameters
    ----------
    result
        The run: every model's scores, the labels learned, the alarms.
    truth
        Whether each transaction (by id) is a fraud, learned or not.
    options
        How the run is judged.
    change_points
        The manifest's change points, each with its ``event_time`` (Unix seconds).
    source
        What was replayed (e.g. its ``name``), copied into the card.
    """
    start = float(result.times.min()) if len(result.times) else 0.0
    end = float(result.times.max()) if len(result.times) else 0.0
    changes = [float(p["event_time"]) for p in change_points]
    alarms = [Alarm(e.detector, e.subject, e.first_seen) for e in result.alarms]
    delays = result.label_time - result.times
    learned = result.label_fraud >= 0
    label_delay = {}
    for name, keep in (("all", learned), ("fraud", result.label_fraud == 1)):
        d = delays[keep] / DAY
        label_delay[name] = {
            f"p{q}_days": float(np.percentile(d, q)) if len(d) else math.nan
            for q in (10, 50, 90, 99)
        }
    card = {
        "source": dict(source or {}),
        "options": asdict(options),
        "start": iso(start),
        "end": iso(end),
        "days": (end - start) / DAY,
        "run": {
            "transactions": len(result.txn_ids),
            "scored": result.scored,
            "too_late": result.too_late,
            "labels_learned": result.learned,
            "duplicate_labels": result.duplicate_labels,
            "unknown_labels": result.unknown_labels,
            "events": result.events,
            "seconds": result.seconds,
            "events_per_second": result.events / result.seconds if result.seconds else math.nan,
        },
        "champion": result.champion,
        "promotions": [
            {**promotion, "at": iso(float(promotion["at"]))} for promotion in result.promotions
        ],
        "change_points": [
            {**p, "detection": found}
            for p, found in zip(
                change_points, per_change(alarms, changes, options.max_delay), strict=True
            )
        ],
        "models": {
            name: _model_card(labelled(result, truth, name), start, changes, options)
            for name in result.scores
        },
        "alarms": [
            {
                **asdict(e),
                "first_seen_at": iso(e.first_seen),
                "hours_after_start": (e.first_seen - start) / 3600,
            }
            for e in result.alarms
        ],
        "detectors": judge(alarms, changes, start, end, options.max_delay),
        "label_delay": label_delay,
        "features": _features(result, truth, start + options.warm_up_days * DAY),
    }
    cleaned: dict[str, Any] = _clean(card)
    return cleaned


def from_stream(
    scores: Mapping[str, tuple[float, str, float]],
    alarms: Sequence[DriftEvent],
    labels: pl.DataFrame,
    champion: str,
) -> EmbeddedResult:
    """What a live stream did, as a run to judge: ``scores`` (txn id -> event time, card,
    score, as read from the ``scores`` topic), the alarms read from ``drift-events``, and
    the labels (arrival times) of the source it replayed.

    Parameters
    ----------
    scores
        Transaction id -> (event time, card id, score) of every transaction scored.
    alarms
        The drift alarms raised.
    labels
        ``txn_id``, ``is_fraud`` and ``event_time`` (arrival); only those arrived by the
        newest score count as learned.
    champion
        The name the scores go by (the model the worker served).

    Examples
    --------
    >>> import polars as pl
    >>> labels = pl.DataFrame({"txn_id": ["b"], "is_fraud": [True], "event_time": [9.0]})
    >>> run = from_stream({"a": (10.0, "c", 0.1), "b": (5.0, "c", 0.9)}, [], labels, "lr")
    >>> run.txn_ids, run.label_fraud.tolist(), run.label_time.tolist()[1]
    (['b', 'a'], [1, -1], nan)
    """
    ordered = sorted(scores.items(), key=lambda item: item[1][0])
    newest = ordered[-1][1][0] if ordered else -math.inf
    arrived = labels.filter(pl.col("event_time") <= newest)  # those the worker could learn
    arrivals = dict(arrived.select("txn_id", "event_time").iter_rows())
    frauds = dict(arrived.select("txn_id", "is_fraud").iter_rows())
    ids = [txn_id for txn_id, _ in ordered]
    return EmbeddedResult(
        txn_ids=ids,
        times=np.array([v[0] for _, v in ordered], dtype=float),
        cards=np.array([v[1] for _, v in ordered], dtype=object),
        scores={champion: np.array([v[2] for _, v in ordered], dtype=float)},
        label_fraud=np.array([int(frauds[t]) if t in frauds else -1 for t in ids], dtype=np.int8),
        label_time=np.array([arrivals.get(t, math.nan) for t in ids], dtype=float),
        alarms=list(alarms),
        statistics={},
        champion=champion,
        scored=len(ids),
        learned=sum(t in frauds for t in ids),
    )


def _f(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def summary_lines(card: Mapping[str, Any]) -> list[str]:
    """The scorecard's gist, a few lines of text."""
    run = card["run"]
    pace = (
        f"in {run['seconds']:.1f}s ({_f(run['events_per_second'], 0)} events/s)"
        if run["seconds"]
        else "(a live stream)"
    )
    lines = [
        f"{card['source'].get('name', 'stream')}: {run['transactions']:,} transactions, "
        f"{run['labels_learned']:,} labels learned over {card['days']:.1f} days {pace}; "
        f"{run['too_late']} too late, {run['unknown_labels']} labels without a "
        "scored transaction",
        "model                          AP     ROC AUC  CP@100  recall  precision  "
        "cost/txn  (after warm-up AP)",
    ]
    for name, model in card["models"].items():
        o, w = model["overall"], model["after_warm_up"]
        lines.append(
            f"  {name:28s} {_f(o['average_precision'])}  {_f(o['roc_auc'])}    "
            f"{_f(o['card_precision_at_k'])}   {_f(o['recall'])}   "
            f"{_f(o['precision'])}      {_f(o['expected_cost'], 2):8s}  "
            f"({_f(w['average_precision'])})"
        )
    for promotion in card.get("promotions", []):
        lines.append(
            f"promoted {promotion['to']} over {promotion['from']} at {promotion['at']}: "
            f"AP {_f(promotion['to_ap'])} against {_f(promotion['from_ap'])} on the "
            f"latest labels (paired bootstrap p = {promotion['p_value']:.3g})"
        )
    champion = card["models"][card["champion"]]
    for point, recovery in zip(card["change_points"], champion["recovery"], strict=True):
        found = point["detection"]
        first = found["first"]
        seen = (
            f"detected by {first['detector']} ({first['subject']}) "
            f"{first['delay_hours']:.1f} h after"
            if first
            else f"MISSED (no alarm within {card['detectors']['max_delay_hours']:g} h)"
        )
        back = (
            "not within the run" if recovery["days"] is None else f"{recovery['days']:.0f} day(s)"
        )
        lines.append(
            f"change {point['kind']} at {point['at']}: {seen}; AP {_f(recovery['before'])}"
            f" before, lowest {_f(recovery['lowest'])}, back in {back}"
        )
    detectors = card["detectors"]
    for name, d in detectors["detectors"].items():
        lines.append(
            f"  {name:20s} alarms {d['alarms']:3d}  false {d['false_alarms']:3d} "
            f"({_f(d['false_alarms_per_30_days'], 2)}/30 days)  recall "
            f"{_f(d['recall'], 2)}  precision {_f(d['precision'], 2)}  mean delay "
            f"{_f(d['mean_delay_hours'], 1)} h"
        )
    if not detectors["detectors"]:
        lines.append("  no detector alarmed")
    return lines
