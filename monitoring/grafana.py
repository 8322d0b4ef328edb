"""Building blocks for the Grafana dashboards written as code (``dashboards/*.dashboard.py``).

A dashboard file defines ``dashboard`` with :func:`dashboard` and
:func:`timeseries` / :func:`heatmap`; ``fraudstream dashboards`` turns each
into ``dashboards/<name>.json`` (committed; a test fails when the JSON and
the code differ) and another test runs every query against a live
Prometheus.

Examples
--------
>>> d = dashboard("demo", "Demo", [timeseries("Scores/s", [("rate(x[1m])", "scores")])])
>>> [t for t in queries(d)]
['rate(x[1m])']
>>> import json
>>> json.loads(to_json(d))["uid"]
'demo'
"""

from __future__ import annotations

import json
import runpy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from grafanalib._gen import DashboardEncoder
from grafanalib.core import Annotations, Dashboard, GridPos, Heatmap, Target, TimeSeries

DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
WIDTH, HEIGHT = 12, 8

Query = tuple[str, str]


def _targets(queries: Sequence[Query]) -> list[Target]:
    return [
        Target(expr=expr, legendFormat=legend, refId=chr(ord("A") + i), datasource=DATASOURCE)
        for i, (expr, legend) in enumerate(queries)
    ]


def timeseries(
    title: str,
    queries: Sequence[Query],
    unit: str = "short",
    description: str = "",
    log_scale: bool = False,
) -> TimeSeries:
    """A time-series panel of PromQL ``(expression, legend)`` pairs.

    Parameters
    ----------
    title
        The panel's title.
    queries
        The series: PromQL expressions and their legend formats.
    unit
        Grafana's unit of the axis (``short``, ``s``, ``percentunit``...).
    description
        The panel's description, shown on hover (empty: none).
    log_scale
        A base-10 logarithmic axis.
    """
    scale = {"scaleDistributionType": "log", "scaleDistributionLog": 10} if log_scale else {}
    return TimeSeries(
        title=title,
        targets=_targets(queries),
        unit=unit,
        dataSource=DATASOURCE,
        description=description or None,
        **scale,
    )


def heatmap(title: str, queries: Sequence[Query], description: str = "") -> Heatmap:
    """A heatmap with one row per series (e.g. one per feature).

    Parameters
    ----------
    title
        The panel's title.
    queries
        The series: PromQL expressions and their legend formats.
    description
        The panel's description, shown on hover (empty: none).
    """
    return Heatmap(
        title=title,
        targets=_targets(queries),
        dataSource=DATASOURCE,
        description=description or None,
        dataFormat="tsbuckets",
        legend={"show": True},
    )


def annotation(name: str, expr: str, title: str) -> dict[str, Any]:
    """An annotation drawn wherever ``expr`` returns something (e.g. a detector's alarm).

    Parameters
    ----------
    name
        The annotation's name in the dashboard's list (where it is toggled).
    expr
        The PromQL expression.
    title
        The text of each mark (Grafana's ``titleFormat``: ``{{label}}`` is allowed).
    """
    return {
        "name": name,
        "datasource": DATASOURCE,
        "enable": True,
        "expr": expr,
        "iconColor": "red",
        "titleFormat": title,
        "step": "30s",
    }


def dashboard(
    uid: str, title: str, panels: Sequence[Any], annotations: Sequence[dict[str, Any]] = ()
) -> Dashboard:
    """Panels laid out two to a row.

    Parameters
    ----------
    uid
        The dashboard's Grafana uid (stable: its URL).
    title
        The dashboard's title.
    panels
        Its panels, in reading order (their position and id are set here).
    annotations
        Its annotations (:func:`annotation`).
    """
    placed = []
    for i, panel in enumerate(panels):
        panel.gridPos = GridPos(h=HEIGHT, w=WIDTH, x=(i % 2) * WIDTH, y=(i // 2) * HEIGHT)
        panel.id = i + 1
        placed.append(panel)
    return Dashboard(
        uid=uid,
        title=title,
        panels=placed,
        tags=["fraudstream"],
        annotations=Annotations(list=list(annotations)),
        timezone="utc",
        refresh="10s",
        schemaVersion=37,
    )


def queries(board: Dashboard) -> list[str]:
    """Every PromQL expression of the dashboard's panels."""
    return [t.expr for panel in board.panels for t in panel.targets]


def to_json(board: Dashboard) -> str:
    """The dashboard's JSON for Grafana, stable across runs."""
    return json.dumps(board.to_json_data(), cls=DashboardEncoder, indent=2, sort_keys=True) + "\n"


def load(path: Path) -> Dashboard:
    """The ``dashboard`` defined by a ``*.dashboard.py`` file."""
    board = runpy.run_path(str(path))["dashboard"]
    if not isinstance(board, Dashboard):
        raise TypeError(f"{path}: 'dashboard' is not a grafanalib Dashboard")
    return board


def generate(folder: Path) -> dict[Path, str]:
    """JSON path -> content for every ``*.dashboard.py`` in ``folder``."""
    return {
        path.with_name(path.name.replace(".dashboard.py", ".json")): to_json(load(path))
        for path in sorted(folder.glob("*.dashboard.py"))
    }
