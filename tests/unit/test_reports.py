"""Evidently reports: built from Parquet windows, HTML and JSON, and what they say."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from monitoring.reports import build_report, save_windows


def test_a_report_finds_the_moved_column_and_not_the_steady_one(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    reference = {"moved": list(rng.normal(0, 1, 800)), "steady": list(rng.normal(0, 1, 800))}
    current = {"moved": list(rng.normal(1.5, 1, 800)), "steady": list(rng.normal(0, 1, 800))}
    folder = save_windows(tmp_path / "r", reference, current)
    summary = build_report(folder)
    assert summary["drifted"] == ["moved"]
    assert summary["columns"]["steady"]["drifted"] is False
    assert (folder / "report.html").stat().st_size > 10_000
    assert (folder / "report.json").is_file()
