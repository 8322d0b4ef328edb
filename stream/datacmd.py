"""The data commands of the CLI: ``scenarios``, ``simulate-data`` and ``replay``.

:mod:`stream.cli` parses the arguments and calls these; they print for a
person and return the exit status.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from producers.dataset import (
    MANIFEST,
    ColumnMapping,
    DatasetError,
    read_dataset,
    read_foreign,
    write_dataset,
)
from producers.replay import Replayer, ReplayError, encode_events, progress_bar
from producers.scenario import (
    ScenarioError,
    ScenarioSpec,
    builtin_scenarios,
    describe,
    load_scenario,
    moved,
    run_scenario,
)
from stream.cli import positive_float
from stream.settings import Settings

#: Exit status when some rows of a foreign file were rejected (and reported).
EXIT_ROWS_REJECTED = 3


def add_arguments(sub: argparse._SubParsersAction) -> None:
    """The data subcommands and their options."""
    scenarios = sub.add_parser("scenarios", help="list or describe the drift scenarios")
    scenarios.add_argument("action", choices=["list", "describe"])
    scenarios.add_argument("name", nargs="?", help="scenario name or YAML file (describe)")

    data = sub.add_parser("simulate-data", help="write a scenario to Parquet with its manifest")
    data.add_argument("scenario", help="built-in scenario name or YAML file")
    data.add_argument("--out", type=Path, required=True, help="folder to write into")
    _scenario_options(data)

    replay = sub.add_parser(
        "replay", help="send a scenario, a dataset folder or a CSV/Parquet file into Kafka")
    replay.add_argument("source", help="scenario name or YAML, simulate-data folder, or file")
    replay.add_argument("--speed", default="max",
                        help="'max' (as fast as possible), 'realtime', or N (N x faster)")
    replay.add_argument("--wait-for-kafka", type=positive_float, default=300.0, metavar="SECONDS",
                        help="how long a broker outage is waited out (batches are sent "
                             "again) before the replay gives up (default 300)")
    replay.add_argument("--mapping", type=Path, help="column mapping file for a foreign file")
    replay.add_argument("--map", action="append", default=[], metavar="FIELD=COLUMN",
                        help="a column mapping entry (repeatable) for a foreign file")
    _scenario_options(replay)


def add_report_arguments(sub: argparse._SubParsersAction) -> None:
    report = sub.add_parser(
        "drift-report", help="an Evidently data-drift report (HTML + JSON) of two windows")
    report.add_argument("folder", type=Path,
                        help="a folder with reference.parquet and current.parquet (as the worker "
                             "saves them on a data-drift alarm), or where to write them")
    report.add_argument("--scenario", help="on demand: build both windows from this scenario")
    report.add_argument("--reference", default="0:7", metavar="DAYS",
                        help="scenario days of the reference window, as FROM:TO (default 0:7)")
    report.add_argument("--current", default="14:21", metavar="DAYS",
                        help="scenario days of the current window (default 14:21)")
    report.add_argument("--customers", type=int, default=500)


def drift_report(args: argparse.Namespace) -> int:
    from monitoring.reports import build_report

    os.nice(10)  # a worker starts this: scoring comes first

    if args.scenario:
        _scenario_windows(args)
    summary = build_report(args.folder)
    print(f"report: {args.folder / 'report.html'} (and report.json); "
          f"{summary.get('drifted_count', 0):.0f} drifted column(s), Evidently's verdict: "
          f"{', '.join(summary['drifted']) or 'none'}")
    return 0


def _scenario_windows(args: argparse.Namespace) -> None:
    import asyncio

    from features.vector import FEATURE_NAMES
    from monitoring.reports import save_windows
    from stream.replay import replay_features

    simulation, _ = run_scenario(load_scenario(args.scenario), customers=args.customers)
    records = asyncio.run(replay_features(simulation.events()))
    start = float(simulation.transactions["event_time"][0]) // 86400 * 86400

    def window(days: str) -> dict[str, list[float]]:
        first, _, last = days.partition(":")
        lo, hi = start + float(first) * 86400, start + float(last) * 86400
        rows = [r.features for r in records.values() if r is not None and lo <= r.event_time < hi]
        if not rows:
            raise DatasetError(f"no transaction in days {days} of {args.scenario}")
        return {name: [row[name] for row in rows] for name in FEATURE_NAMES}

    save_windows(args.folder, window(args.reference), window(args.current))


def non_negative(text: str) -> float:
    """An argument that is a number of at least 0 (a day, hours, a count of days)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{value} must be 0 or more")
    return value


def _scenario_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=None, help="override the scenario's seed")
    parser.add_argument("--days", type=float, default=None, help="override its length")
    parser.add_argument("--customers", type=int, default=None, help="override its size")
    parser.add_argument("--change-day", type=non_negative, default=None,
                        help="move its first change (the others with it) to this day; it then "
                             "lasts as long after it as before (unless --days)")


def scenarios(args: argparse.Namespace) -> int:
    if args.action == "list":
        for name in builtin_scenarios():
            spec = load_scenario(name)
            print(f"{name:24s} {spec.description}")
        return 0
    if not args.name:
        print("fraudstream: scenarios describe needs a name or a file", file=sys.stderr)
        return 2
    print(describe(load_scenario(args.name)))
    return 0


def simulate_data(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    simulation, manifest = run_scenario(scenario_spec(args, args.scenario), args.seed,
                                        args.days, args.customers)
    folder = write_dataset(simulation, manifest, args.out)
    seconds = time.perf_counter() - started
    count = simulation.transactions.height
    print(f"wrote {count:,} transactions and {simulation.labels.height:,} labels to {folder} "
          f"in {seconds:.1f}s ({count / seconds:,.0f} transactions/s); manifest: "
          f"{len(manifest['change_points'])} change point(s)")
    return 0


def replay(args: argparse.Namespace, settings: Settings) -> int:
    from stream.topics import ensure_topics

    speed = parse_speed(args.speed)
    transactions, labels, rejected = load_source(args)
    for row, reason in rejected[:20]:
        print(f"row {row}: {reason}", file=sys.stderr)
    if rejected:
        print(f"{len(rejected):,} row(s) rejected and not replayed (listed above"
              f"{', first 20' if len(rejected) > 20 else ''})", file=sys.stderr)
    events = encode_events(transactions, labels)
    ensure_topics(settings)
    # a broker outage is reported once by the replayer, not every 100 ms by the client
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    replayer = Replayer(settings.kafka.bootstrap_servers,
                        (settings.topics.name("transactions"), settings.topics.name("labels")),
                        speed, progress_bar(lambda text: print(text, end="", file=sys.stderr,
                                                               flush=True)),
                        retry_seconds=args.wait_for_kafka)
    try:
        summary = replayer.run(events)
    except ReplayError as exc:
        print(file=sys.stderr)
        print(f"replay stopped: {exc}; {replayer.summary.line()}", file=sys.stderr)
        return 1
    print(file=sys.stderr)
    print(summary.line())
    if summary.failed:
        return 1
    return EXIT_ROWS_REJECTED if rejected else 0


def parse_speed(text: str) -> float | None:
    """``max`` -> None, ``realtime`` -> 1, ``N`` -> N (> 0).

    >>> parse_speed("max"), parse_speed("realtime"), parse_speed("60")
    (None, 1.0, 60.0)
    """
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


Rejected = list[tuple[int, str]]


def load_source(args: argparse.Namespace) -> tuple[pl.DataFrame, pl.DataFrame, Rejected]:
    """Transactions, labels and rejected rows of whatever ``args.source`` names."""
    source = load_source_and_manifest(args)
    return source.transactions, source.labels, source.rejected


@dataclass(frozen=True)
class Source:
    """What a source holds: transactions, labels, rejected rows, and the manifest of its
    change points (None for a foreign file)."""

    transactions: pl.DataFrame
    labels: pl.DataFrame
    rejected: Rejected
    manifest: dict[str, Any] | None


def load_source_and_manifest(args: argparse.Namespace) -> Source:
    """:func:`load_source`, with the manifest of a scenario or a dataset folder."""
    source = Path(args.source)
    if args.mapping or args.map:
        mapping = (ColumnMapping.from_file(args.mapping) if args.mapping
                   else ColumnMapping.from_pairs(args.map))
        foreign = read_foreign(source, mapping)
        return Source(foreign.transactions, foreign.labels, foreign.rejected, None)
    if source.is_dir():
        transactions, labels = read_dataset(source)
        written = source / MANIFEST
        return Source(transactions, labels, [],
                      json.loads(written.read_text()) if written.is_file() else None)
    if source.suffix in (".csv", ".parquet"):
        raise DatasetError(f"{source}: a foreign file needs --mapping FILE or --map FIELD=COLUMN")
    simulation, manifest = run_scenario(scenario_spec(args, args.source), args.seed,
                                        args.days, args.customers)
    return Source(simulation.transactions, simulation.labels, [], manifest)


def scenario_spec(args: argparse.Namespace, name: str) -> ScenarioSpec:
    """Scenario ``name``, its changes moved to ``args.change_day`` when given (lasting
    as long after the first change as before, unless ``args.days``)."""
    spec = load_scenario(name)
    change_day = getattr(args, "change_day", None)
    if change_day is None or not spec.changes:
        return spec
    first = min(c.at_day for c in spec.changes)
    return moved(spec, args.days or change_day + spec.days - first, change_day)


ERRORS = (ScenarioError, DatasetError)
