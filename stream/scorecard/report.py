"""The scorecard's plots (PNG, matplotlib) and its one-page ``report.html``.

Four plots: average precision and card precision@k per day, with the change
points and the alarms marked; the champion's score distribution per day;
label delays; every watched drift statistic over event time with its
threshold. The page holds the summary tables and the plots (embedded, so
the file stands alone).
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from models.evaluation import DAY
from monitoring.drift.config import DriftConfig
from stream.scorecard.options import EmbeddedResult

PLOTS = ("metrics_per_day.png", "scores_per_day.png", "label_delay.png", "drift_statistics.png")


def _dates(times: Sequence[float] | np.ndarray) -> Any:
    """Event times as datetimes, for matplotlib's date axis."""
    return [datetime.fromtimestamp(float(t), tz=UTC) for t in times]


def _mark(ax: Any, card: Mapping[str, Any], alarms: bool = True) -> None:
    for point in card["change_points"]:
        ax.axvline(_dates([point["event_time"]])[0], color="red", linestyle="--", linewidth=1)
    if not alarms:
        return
    detectors = sorted({a["detector"] for a in card["alarms"]})
    colours = {d: f"C{i % 10}" for i, d in enumerate(detectors)}
    for detector in detectors:
        times = [a["first_seen"] for a in card["alarms"] if a["detector"] == detector]
        ax.plot(
            _dates(times),
            [1.02] * len(times),
            marker="v",
            linestyle="none",
            color=colours[detector],
            label=f"alarm: {detector}",
            transform=ax.get_xaxis_transform(),
            clip_on=False,
        )


def write_plots(
    folder: Path, result: EmbeddedResult, card: Mapping[str, Any], drift: DriftConfig | None
) -> list[Path]:
    """Draw the four plots into ``folder``; their paths.

    Parameters
    ----------
    folder
        Where the PNG files go (created if missing).
    result
        The run: scores, label delays and drift statistics.
    card
        Its scorecard (:func:`stream.scorecard.judge.scorecard`).
    drift
        The detectors' settings, for the thresholds drawn (None: the defaults).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / name for name in PLOTS]

    fig, (ap, cp) = plt.subplots(2, 1, figsize=(11, 6.5), sharex=True)
    for name, model in card["models"].items():
        dates = _dates(model["daily"]["day"])
        style = "-" if name == card["champion"] else ":"
        ap.plot(dates, _nan(model["daily"]["average_precision"]), style, label=name)
        cp.plot(dates, _nan(model["daily"]["card_precision_at_k"]), style, label=name)
    ap.set_ylabel("average precision")
    cp.set_ylabel(f"card precision@{card['options']['k']}")
    _mark(ap, card)
    _mark(cp, card, alarms=False)
    ap.legend(fontsize=7, ncol=3, loc="lower left")
    fig.suptitle("Per day of transaction time (red dashes: change points; triangles: alarms)")
    _save(fig, paths[0])

    fig, ax = plt.subplots(figsize=(11, 4))
    champion = result.scores[result.champion]
    day = np.floor(result.times / DAY) * DAY
    keep = ~np.isnan(champion)
    starts = np.unique(day[keep])
    quantiles = (
        np.array([np.percentile(champion[keep & (day == d)], [50, 90, 99]) for d in starts])
        if len(starts)
        else np.zeros((0, 3))
    )
    for column, q in enumerate((50, 90, 99)):
        ax.plot(_dates(starts), quantiles[:, column], label=f"p{q}")
    threshold = card["options"]["threshold"]
    ax.axhline(threshold, color="grey", linewidth=0.8, label=f"threshold {threshold:g}")
    ax.set_yscale("log")
    ax.set_ylabel(f"{result.champion} score")
    _mark(ax, card)
    ax.legend(fontsize=7)
    ax.set_title("Champion's score distribution per day")
    _save(fig, paths[1])

    fig, (hist, over) = plt.subplots(1, 2, figsize=(11, 3.8))
    delays = (result.label_time - result.times) / DAY
    for value, name in ((1, "fraud"), (0, "genuine")):
        d = delays[result.label_fraud == value]
        if len(d):
            hist.hist(d, bins=60, alpha=0.6, label=name, density=True)
    hist.set_xlabel("label delay (days)")
    hist.legend(fontsize=7)
    fraud = result.label_fraud == 1
    arrived = np.floor(result.label_time[fraud] / DAY) * DAY
    days = np.unique(arrived)
    over.plot(_dates(days), [np.median(delays[fraud][arrived == d]) for d in days])
    over.set_ylabel("median fraud label delay (days)")
    _mark(over, card, alarms=False)
    fig.suptitle("Label delays (by arrival day)")
    _save(fig, paths[2])

    _drift_plot(plt, paths[3], result, card, drift)
    return paths


def _drift_plot(
    plt: Any, path: Path, result: EmbeddedResult, card: Mapping[str, Any], drift: DriftConfig | None
) -> None:
    config = drift or DriftConfig()
    thresholds = {
        "psi": config.psi_threshold,
        "ks": config.ks_threshold,
        "kswin_p_value": config.kswin_alpha,
        "prediction_psi": config.psi_threshold,
        "mean_shift": 1.0,
        "fraud_rate_ratio": config.fraud_rate_ratio,
        "label_delay_ratio": config.label_delay_ratio,
    }
    names = sorted(n for n in result.statistics if n.split(" ")[0] in thresholds)
    columns = 4
    rows = max(1, math.ceil(len(names) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(14, 2.1 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        points = result.statistics[name]
        ax.plot(_dates([t for t, _ in points]), [v for _, v in points], linewidth=0.8)
        ax.axhline(thresholds[name.split(" ")[0]], color="red", linewidth=0.7)
        if name.startswith("kswin"):
            ax.set_yscale("log")
        _mark(ax, card, alarms=False)
        ax.set_title(name, fontsize=7)
        ax.tick_params(labelsize=6)
        ax.tick_params(axis="x", labelrotation=30)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    if not names:
        axes.flat[0].text(
            0.5, 0.5, "no drift statistic was computed (too little data)", ha="center"
        )
    fig.suptitle("Drift statistics over event time (red: threshold / change points)")
    _save(fig, path)


def _nan(values: Sequence[float | None]) -> list[float]:
    return [math.nan if v is None else v for v in values]


def _save(fig: Any, path: Path) -> None:
    fig.tight_layout(rect=(0, 0, 1, 0.96))  # room for the title
    fig.savefig(path, dpi=90)
    import matplotlib.pyplot as plt

    plt.close(fig)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return html.escape(str(value))


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], css: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


METRICS = (
    "average_precision",
    "roc_auc",
    "card_precision_at_k",
    "recall",
    "precision",
    "expected_cost",
    "transactions",
    "frauds",
)


def write_html(path: Path, card: Mapping[str, Any], plots: Sequence[Path]) -> Path:
    """The one-page report of ``card`` with ``plots`` embedded.

    Parameters
    ----------
    path
        The HTML file written; returned.
    card
        The scorecard (:func:`stream.scorecard.judge.scorecard`).
    plots
        The PNG files embedded, in order (:func:`write_plots`).
    """
    run = card["run"]
    name = card["source"].get("name", "stream")
    parts = [
        f"<h1>Scorecard: {html.escape(str(name))}</h1>",
        f"<p>{card['start']} to {card['end']} ({card['days']:.1f} days): "
        f"{run['transactions']:,} transactions, {run['labels_learned']:,} labels learned, "
        f"{_rate(run['events_per_second'])}. Champion: "
        f"<b>{html.escape(card['champion'])}</b>. Labels were learned at their arrival "
        "time; every score was given before its label was known.</p>",
        "<h2>Models</h2>",
        _table(
            ["model", "part", *METRICS],
            [
                [m, part, *(card["models"][m][part].get(k) for k in METRICS)]
                for m in card["models"]
                for part in ("overall", "after_warm_up")
            ],
            "models",
        ),
        "<h2>Change points</h2>",
        _table(
            [
                "kind",
                "at",
                "what",
                "detected",
                "first alarm",
                "delay (h)",
                "detectors",
                "AP before",
                "AP lowest",
                "recovery (days)",
            ],
            [
                [
                    p["kind"],
                    p["at"],
                    p["what"],
                    p["detection"]["detected"],
                    (p["detection"]["first"] or {}).get("detector"),
                    (p["detection"]["first"] or {}).get("delay_hours"),
                    ", ".join(p["detection"]["detectors"]),
                    r["before"],
                    r["lowest"],
                    r["days"],
                ]
                for p, r in zip(
                    card["change_points"], card["models"][card["champion"]]["recovery"], strict=True
                )
            ],
            "changes",
        ),
        f"<h2>Detectors</h2><p>An alarm is true when it comes within "
        f"{card['detectors']['max_delay_hours']:g} h after a change point.</p>",
        _table(
            [
                "detector",
                "alarms",
                "false alarms",
                "false per 30 days",
                "recall",
                "precision",
                "mean delay (h)",
            ],
            [
                [
                    n,
                    d["alarms"],
                    d["false_alarms"],
                    d["false_alarms_per_30_days"],
                    d["recall"],
                    d["precision"],
                    d["mean_delay_hours"],
                ]
                for n, d in [
                    *card["detectors"]["detectors"].items(),
                    ("any", card["detectors"]["any"]),
                ]
            ],
            "detectors",
        ),
        "<h2>Alarms</h2>",
        _table(
            ["first seen", "detector", "subject", "magnitude", "window"],
            [
                [a["first_seen_at"], a["detector"], a["subject"], a["magnitude"], a["window"]]
                for a in card["alarms"]
            ],
            "alarms",
        ),
        *(
            [
                "<h2>Each feature alone (after warm-up)</h2><p>Non-zero share, and the AP and "
                "ROC AUC of the feature's own value as the score (in its better direction).</p>",
                _table(
                    ["feature", "non-zero share", "AP", "ROC AUC", "direction"],
                    sorted(
                        (
                            [
                                n,
                                f["nonzero_share"],
                                f["average_precision"],
                                f["roc_auc"],
                                f["direction"],
                            ]
                            for n, f in card["features"].items()
                        ),
                        key=lambda row: -(row[2] or 0.0),
                    ),
                    "features",
                ),
            ]
            if card.get("features")
            else []
        ),
        "<h2>Weekly (champion)</h2>",
        _weekly(card["models"][card["champion"]]["weekly"]),
        "<h2>Plots</h2>",
        *(
            f'<figure><img alt="{p.stem}" src="data:image/png;base64,'
            f'{base64.b64encode(p.read_bytes()).decode()}"><figcaption>{p.name}</figcaption>'
            "</figure>"
            for p in plots
        ),
    ]
    style = (
        "body{font-family:sans-serif;margin:2em;max-width:1300px}"
        "table{border-collapse:collapse;margin:1em 0;font-size:13px}"
        "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}"
        "img{max-width:100%}"
    )
    path.write_text(
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>Scorecard: {html.escape(str(name))}</title><style>{style}</style>"
        f"</head><body>{''.join(parts)}</body></html>\n"
    )
    return path


def _rate(per_second: float | None) -> str:
    return "replayed from a live stream" if per_second is None else f"{per_second:,.0f} events/s"


def _weekly(weekly: Mapping[str, list[Any]]) -> str:
    starts = [datetime.fromtimestamp(d, tz=UTC).date().isoformat() for d in weekly["day"]]
    return _table(
        ["week from", *METRICS],
        [[s, *(weekly[k][i] for k in METRICS)] for i, s in enumerate(starts)],
        "weekly",
    )
