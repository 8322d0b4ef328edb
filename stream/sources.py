"""What a replay or a scorecard reads: a scenario (name or YAML), a ``simulate-data``
folder, or a foreign CSV/Parquet file with its column mapping; and its events in the order
they become known (:func:`events_from_frames`).

:func:`load_source` gives a :class:`Source`: transactions, labels, the rows
rejected (foreign files only) and the manifest of change points (None for a
foreign file).

Examples
--------
>>> source = load_source(SourceSpec("baseline", scenario=ScenarioOverrides(days=2,
...                                                                        customers=20)))
>>> source.transactions.height > 0, source.rejected, source.manifest["scenario"]
(True, [], 'baseline')
>>> parse_speed("max"), parse_speed("realtime"), parse_speed("60")
(None, 1.0, 60.0)
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from features.events import Label, Transaction
from producers.dataset import MANIFEST, ColumnMapping, DatasetError, read_dataset, read_foreign
from producers.scenario import ScenarioError, ScenarioSpec, load_scenario, moved, run_scenario

#: The errors of a source that cannot be read, each naming what is wrong.
ERRORS = (ScenarioError, DatasetError)

Rejected = list[tuple[int, str]]


@dataclass(frozen=True)
class ScenarioOverrides:
    """What a scenario's run may change: its seed, length and size, and the day of its
    first change (the others move with it; it then lasts as long after it as before,
    unless ``days``)."""

    seed: int | None = None
    days: float | None = None
    customers: int | None = None
    change_day: float | None = None


@dataclass(frozen=True)
class SourceSpec:
    """Which source: ``source`` is a scenario name or YAML, a folder, or a file; a
    foreign file needs ``mapping`` (a file) or ``map`` (``FIELD=COLUMN`` entries)."""

    source: str
    mapping: Path | None = None
    map: tuple[str, ...] = ()
    scenario: ScenarioOverrides = field(default_factory=ScenarioOverrides)


@dataclass(frozen=True)
class Source:
    """What a source holds: transactions, labels, rejected rows, and the manifest of its
    change points (None for a foreign file)."""

    transactions: pl.DataFrame
    labels: pl.DataFrame
    rejected: Rejected
    manifest: dict[str, Any] | None


def load_source(spec: SourceSpec) -> Source:
    """Read (or simulate) the source ``spec`` names."""
    source = Path(spec.source)
    if spec.mapping or spec.map:
        mapping = (
            ColumnMapping.from_file(spec.mapping)
            if spec.mapping
            else ColumnMapping.from_pairs(list(spec.map))
        )
        foreign = read_foreign(source, mapping)
        return Source(foreign.transactions, foreign.labels, foreign.rejected, None)
    if source.is_dir():
        transactions, labels = read_dataset(source)
        written = source / MANIFEST
        return Source(
            transactions, labels, [], json.loads(written.read_text()) if written.is_file() else None
        )
    if source.suffix in (".csv", ".parquet"):
        raise DatasetError(f"{source}: a foreign file needs --mapping FILE or --map FIELD=COLUMN")
    run = spec.scenario
    simulation, manifest = run_scenario(
        scenario_spec(spec.source, run), run.seed, run.days, run.customers
    )
    return Source(simulation.transactions, simulation.labels, [], manifest)


def scenario_spec(name: str, run: ScenarioOverrides) -> ScenarioSpec:
    """Scenario ``name``, its changes moved to ``run.change_day`` when given (lasting
    as long after the first change as before, unless ``run.days``).

    Parameters
    ----------
    name
        A built-in scenario's name or a YAML file (:func:`producers.scenario.load_scenario`).
    run
        The overrides; only ``change_day`` and ``days`` matter here.
    """
    spec = load_scenario(name)
    if run.change_day is None or not spec.changes:
        return spec
    first = min(c.at_day for c in spec.changes)
    return moved(spec, run.days or run.change_day + spec.days - first, run.change_day)


def parse_speed(text: str) -> float | None:
    """``max`` -> None, ``realtime`` -> 1, ``N`` -> N (> 0)."""
    if text == "max":
        return None
    if text == "realtime":
        return 1.0
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"--speed {text!r}: expected 'max', 'realtime' or a number") from None
    if not value > 0:
        raise ValueError(f"--speed {text!r}: must be greater than 0")
    return value


def events_from_frames(
    transactions: pl.DataFrame,
    labels: pl.DataFrame,
) -> Iterator[Transaction | Label]:
    """Transactions and labels in the order they become known (a transaction first on a
    tie), built one at a time.

    Parameters
    ----------
    transactions
        ``txn_id``, ``card_id``, ``terminal_id``, ``amount``, ``event_time`` (Unix seconds)
        and, if located, ``lat`` and ``lon``.
    labels
        ``txn_id``, ``is_fraud`` and ``event_time``: when the label arrives (Unix seconds).
    """
    located = "lat" in transactions.columns
    columns = ["txn_id", "card_id", "terminal_id", "amount", "event_time"]
    columns += ["lat", "lon"] if located else []
    rows = transactions.select(columns).rows()
    label_rows = labels.select("txn_id", "is_fraud", "event_time").rows()
    times = np.concatenate(
        [transactions["event_time"].to_numpy(), labels["event_time"].to_numpy()]
    ).astype(float)
    kinds = np.r_[np.zeros(len(rows), np.int8), np.ones(len(label_rows), np.int8)]
    count = len(rows)
    for i in np.lexsort((kinds, times)).tolist():
        if i < count:
            r = rows[i]
            yield Transaction(
                r[0],
                r[1],
                r[2],
                r[3],
                r[4],
                *((r[5], r[6]) if located and r[5] is not None else ()),
            )
        else:
            t, f, at = label_rows[i - count]
            yield Label(t, bool(f), at)
