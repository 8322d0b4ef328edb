"""Evidently data-drift reports of a reference window against a current one.

Windows are kept as Parquet (polars): the worker writes the two windows of a
data-drift alarm with :func:`save_windows` and starts ``fraudstream
drift-report`` on them in a separate process, because importing Evidently
takes seconds and must never stall scoring. :func:`build_report` writes
``report.html`` and ``report.json`` beside the windows and returns a short
summary. Evidently is imported only here, only when a report is built.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

REFERENCE = "reference.parquet"
CURRENT = "current.parquet"


def save_windows(folder: Path, reference: Mapping[str, Sequence[float]],
                 current: Mapping[str, Sequence[float]]) -> Path:
    """Write both windows (a column per feature) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    _frame(reference).write_parquet(folder / REFERENCE)
    _frame(current).write_parquet(folder / CURRENT)
    return folder


def _frame(columns: Mapping[str, Sequence[float]]) -> pl.DataFrame:
    length = min((len(v) for v in columns.values()), default=0)
    return pl.DataFrame({name: list(values)[-length:] for name, values in columns.items()})


def build_report(folder: Path) -> dict[str, Any]:
    """Evidently's data-drift report of ``folder``'s windows: HTML and JSON beside them."""
    os.environ.setdefault("DO_NOT_TRACK", "1")  # no telemetry from Evidently
    from evidently import Report
    from evidently.presets import DataDriftPreset

    reference = pl.read_parquet(folder / REFERENCE).to_pandas()
    current = pl.read_parquet(folder / CURRENT).to_pandas()
    snapshot = Report([DataDriftPreset()]).run(reference_data=reference, current_data=current)
    snapshot.save_html(str(folder / "report.html"))
    raw = json.loads(snapshot.json())
    (folder / "report.json").write_text(json.dumps(raw, indent=2) + "\n")
    return summarise(raw)


def summarise(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The drifted share, and per column Evidently's drift score, method and verdict.

    >>> summarise({"metrics": [
    ...     {"metric_name": "DriftedColumnsCount(drift_share=0.5)",
    ...      "value": {"count": 1.0, "share": 0.5}},
    ...     {"metric_name": "ValueDrift(column=a,method=K-S p_value,threshold=0.05)",
    ...      "value": 0.001},
    ...     {"metric_name": "ValueDrift(column=b,method=Wasserstein distance (normed),"
    ...                     "threshold=0.1)", "value": 0.02}]})["drifted"]
    ['a']
    """
    summary: dict[str, Any] = {"columns": {}, "drifted": []}
    for metric in raw.get("metrics", []):
        name = str(metric.get("metric_name", ""))
        value = metric.get("value")
        if name.startswith("DriftedColumnsCount") and isinstance(value, dict):
            summary["drifted_share"] = value.get("share")
            summary["drifted_count"] = value.get("count")
        elif name.startswith("ValueDrift(column=") and isinstance(value, int | float):
            params = dict(part.split("=", 1) for part in name[len("ValueDrift("):-1].split(",")
                          if "=" in part)
            threshold = float(params.get("threshold", "nan"))
            method = params.get("method", "")
            drifted = value < threshold if "p_value" in method else value > threshold
            summary["columns"][params["column"]] = {"score": value, "method": method,
                                                    "drifted": bool(drifted)}
            if drifted:
                summary["drifted"].append(params["column"])
    return summary
