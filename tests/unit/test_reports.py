"""Evidently reports: built from Parquet windows, HTML and JSON, and what they say."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import numpy as np
from prometheus_client import CollectorRegistry

from features.store import ScoredRecord
from monitoring.drift.config import DriftConfig
from monitoring.drift_metrics import DriftMetrics
from monitoring.monitor import DriftMonitor
from monitoring.reports import ReportBudget, build_report, save_windows


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


class _Build:
    """A report being built: ``poll()`` is None until ``finish()``."""

    def __init__(self) -> None:
        self.code: int | None = None

    def poll(self) -> int | None:
        return self.code

    def finish(self) -> None:
        self.code = 0


def test_a_drifting_feature_gets_one_report_per_period_and_the_folder_stays_in_budget(
    tmp_path: Path,
) -> None:
    """A feature that keeps drifting alarms again and again; each alarm was a 7.5 s
    Evidently process and megabytes on disk. Now: one report per detector and feature
    per period of event time, none while one is being built, the oldest removed."""
    registry = CollectorRegistry()
    config = DriftConfig(
        reference_size=200,
        window_size=100,
        check_every=50,
        reference_days=0,
        rearm_share=1.0,
        alarm_per_episode=False,
    )
    budget = ReportBudget(tmp_path / "reports", every=12 * 3600.0, max_bytes=1)
    launched: list[tuple[Path, _Build]] = []

    def launch(folder: Path) -> _Build:
        (folder / "report.html").write_bytes(b"x" * 1000)
        launched.append((folder, _Build()))
        return launched[-1][1]

    monitor = DriftMonitor(config, ["x"], 0.5, DriftMetrics.create(registry), budget, launch)
    rng = np.random.default_rng(5)
    alarms = alarmed = 0
    for i in range(6000):  # a minute apart: 100 hours; the mean jumps away every 4 hours
        value = float(rng.normal(0.5 if (i // 240) % 2 else 0.0))
        events = monitor.on_scored(ScoredRecord(f"t{i}", "c", "p", i * 60.0, {"x": value}, 0.1, 1))
        alarms, alarmed = alarms + len(events), alarmed + bool(events)
        if launched and i % 400 == 0:
            launched[-1][1].finish()  # the last report is done some hours later

    def outcome(name: str) -> float:
        value = registry.get_sample_value("fraudstream_drift_reports_total", {"outcome": name})
        assert value is not None
        return value

    built = outcome("built")
    assert 0 < built < alarms and outcome("recent") > 0
    assert outcome("busy") > 0  # one report at a time
    assert built == len(launched)
    # one report covers every feature: a record that alarms PSI and KS asks for one
    assert built + outcome("recent") + outcome("busy") == alarmed
    # one report per detector and feature per 12 hours of event time
    times: dict[str, list[float]] = {}
    for folder, _ in launched:
        detector, subject, first_seen = folder.name.rsplit("-", 2)
        times.setdefault(f"{detector}-{subject}", []).append(float(first_seen))
    for seen in times.values():
        assert all(b - a >= 12 * 3600 for a, b in pairwise(seen))
    # a budget of one byte keeps only the newest report (removed before each new one)
    assert [p.name for p in budget.folder.iterdir()] == [launched[-1][0].name]
