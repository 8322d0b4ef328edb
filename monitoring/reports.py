"""Evidently data-drift reports of a reference window against a current one.

Windows are kept as numpy's ``.npz`` (an array per feature; ``numpy.load``
reads them): the worker writes the two windows of a data-drift alarm with
:func:`save_windows` and starts ``fraudstream
drift-report`` on them in a separate process, because importing Evidently
takes seconds and must never stall scoring. :func:`build_report` writes
``report.html`` and ``report.json`` beside the windows and returns a short
summary. Evidently is imported only here, only when a report is built.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: The windows' files (not Parquet: a worker would hold polars, about 47 MB, for them).
REFERENCE = "reference.npz"
CURRENT = "current.npz"


def save_windows(
    folder: Path, reference: Mapping[str, Sequence[float]], current: Mapping[str, Sequence[float]]
) -> Path:
    """Write both windows (a column per feature) into ``folder``; returns ``folder``.

    Parameters
    ----------
    folder
        Where the windows are written (created if need be).
    reference, current
        The windows' values per feature; each window keeps the last values of each
        feature, as many as its shortest feature holds.
    """
    folder.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(folder / REFERENCE, **_columns(reference))
    np.savez_compressed(folder / CURRENT, **_columns(current))
    return folder


class ReportBudget:
    """Which data-drift alarms get an Evidently report, and the disk the reports may use.

    A report costs seconds of a CPU and megabytes; a drifting feature can
    alarm again and again, PSI and KS together. So one report is built per
    detector and feature per ``every`` seconds of *event* time (a replay at
    any speed builds the same reports), none while the previous one is still
    being built (:meth:`busy` is asked of the launcher), and before a new one
    the oldest report folders are removed until ``folder`` uses less than
    ``max_bytes``.

    Parameters
    ----------
    folder
        The folder of the report folders.
    every
        Seconds of event time between two reports of a detector and feature (>= 0).
    max_bytes
        The bytes the reports may use before the oldest are removed (>= 1).

    Examples
    --------
    >>> import tempfile
    >>> budget = ReportBudget(Path(tempfile.mkdtemp()), every=3600.0, max_bytes=10_000)
    >>> budget.allow("psi", "amount", 1_000.0), budget.allow("ks", "amount", 1_100.0)
    ('built', 'built')
    >>> budget.allow("psi", "amount", 4_000.0)   # within the hour: the first report stands
    'recent'
    >>> budget.allow("psi", "amount", 4_600.0)
    'built'
    >>> for name in ("a", "b", "c"):
    ...     _ = (budget.folder / name).mkdir()
    ...     _ = (budget.folder / name / "report.html").write_bytes(b"x" * 4_000)
    >>> budget.make_room(), sorted(p.name for p in budget.folder.iterdir())
    (4000, ['b', 'c'])
    """

    def __init__(self, folder: Path, every: float, max_bytes: int) -> None:
        if every < 0:
            raise ValueError(f"every: must be >= 0 seconds, got {every}")
        if max_bytes < 1:
            raise ValueError(f"max_bytes: must be >= 1, got {max_bytes}")
        self.folder = folder
        self.every = every
        self.max_bytes = max_bytes
        self._last: dict[tuple[str, str], float] = {}

    def allow(self, detector: str, subject: str, event_time: float, busy: bool = False) -> str:
        """``built`` when this alarm gets a report (then it is counted as the latest),
        else why not: ``recent`` (one was built for it less than ``every`` ago) or
        ``busy`` (the previous report is still being built).

        Parameters
        ----------
        detector, subject
            The alarm's detector and feature.
        event_time
            The alarm's event time (seconds).
        busy
            Whether the previous report is still being built.
        """
        last = self._last.get((detector, subject))
        if last is not None and abs(event_time - last) < self.every:
            return "recent"
        if busy:
            return "busy"
        self._last[(detector, subject)] = event_time
        return "built"

    def make_room(self) -> int:
        """Remove the oldest report folders until the rest use less than ``max_bytes``
        (a new report needs room); returns the bytes freed."""
        if not self.folder.is_dir():
            return 0
        reports = sorted(
            (p for p in self.folder.iterdir() if p.is_dir()),
            key=lambda p: (p.stat().st_mtime, p.name),
        )
        sizes = {p: sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) for p in reports}
        used, freed = sum(sizes.values()), 0
        for report in reports:
            if used < self.max_bytes:
                break
            shutil.rmtree(report, ignore_errors=True)
            used -= sizes[report]
            freed += sizes[report]
        return freed


def _columns(columns: Mapping[str, Sequence[float]]) -> dict[str, Any]:
    length = min((len(v) for v in columns.values()), default=0)
    return {
        name: np.asarray(list(values)[len(values) - length :], dtype=np.float64)
        for name, values in columns.items()
    }


def build_report(folder: Path) -> dict[str, Any]:
    """Evidently's data-drift report of ``folder``'s windows: HTML and JSON beside them."""
    os.environ.setdefault("DO_NOT_TRACK", "1")  # no telemetry from Evidently
    import pandas as pd
    from evidently import Report
    from evidently.presets import DataDriftPreset

    with np.load(folder / REFERENCE) as saved:
        reference = pd.DataFrame({name: saved[name] for name in saved.files})
    with np.load(folder / CURRENT) as saved:
        current = pd.DataFrame({name: saved[name] for name in saved.files})
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
            params = dict(
                part.split("=", 1)
                for part in name[len("ValueDrift(") : -1].split(",")
                if "=" in part
            )
            threshold = float(params.get("threshold", "nan"))
            method = params.get("method", "")
            drifted = value < threshold if "p_value" in method else value > threshold
            summary["columns"][params["column"]] = {
                "score": value,
                "method": method,
                "drifted": bool(drifted),
            }
            if drifted:
                summary["drifted"].append(params["column"])
    return summary
