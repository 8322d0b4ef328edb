"""The data commands: ``scenarios list|describe``, ``simulate-data``, ``replay`` and
``drift-report``. They print for a person and return the exit status (2 when the source
cannot be read: the message names it; 3 when rows of a foreign file were rejected)."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from stream.cli.options import at_least_zero, positive, progress_bar, session

#: Exit status when some rows of a foreign file were rejected (and reported).
EXIT_ROWS_REJECTED = 3

Seed = Annotated[int | None, typer.Option(help="override the scenario's seed")]
Days = Annotated[float | None, typer.Option(callback=positive, help="override its length")]
Customers = Annotated[int | None, typer.Option(callback=positive, help="override its size")]
ChangeDay = Annotated[
    float | None,
    typer.Option(
        callback=at_least_zero,
        help=(
            "move its first change (the others with it) to this day; it "
            "then lasts as long after it as before (unless --days)"
        ),
    ),
]
Mapping = Annotated[Path | None, typer.Option(help="column mapping file for a foreign file")]
MapEntries = Annotated[
    list[str] | None,
    typer.Option(
        "--map",
        metavar="FIELD=COLUMN",
        help="a column mapping entry (repeatable) for a foreign file",
    ),
]


def register(app: typer.Typer) -> None:
    scenarios = typer.Typer(help="list or describe the drift scenarios", no_args_is_help=True)
    scenarios.command("list", help="every built-in scenario")(list_scenarios)
    scenarios.command("describe", help="what a scenario simulates and changes")(describe)
    app.add_typer(scenarios, name="scenarios")
    app.command("simulate-data", help="write a scenario to Parquet with its manifest")(
        simulate_data
    )
    app.command(
        "replay", help="send a scenario, a dataset folder or a CSV/Parquet file into Kafka"
    )(replay)
    app.command("drift-report", help="an Evidently data-drift report (HTML + JSON) of two windows")(
        drift_report
    )


def list_scenarios() -> int:
    from producers.scenario import builtin_scenarios, load_scenario

    for name in builtin_scenarios():
        print(f"{name:24s} {load_scenario(name).description}")
    return 0


def describe(
    name: Annotated[str, typer.Argument(metavar="NAME", help="scenario name or YAML file")],
) -> int:
    from producers.scenario import describe as text
    from producers.scenario import load_scenario

    return _or_2(lambda: print(text(load_scenario(name))))


def simulate_data(
    scenario: Annotated[
        str, typer.Argument(metavar="SCENARIO", help="built-in scenario name or YAML file")
    ],
    out: Annotated[Path, typer.Option(help="folder to write into")],
    seed: Seed = None,
    days: Days = None,
    customers: Customers = None,
    change_day: ChangeDay = None,
) -> int:
    from producers.dataset import write_dataset
    from producers.scenario import run_scenario
    from stream.sources import ScenarioOverrides, scenario_spec

    def simulate() -> None:
        started = time.perf_counter()
        run = ScenarioOverrides(seed, days, customers, change_day)
        simulation, manifest = run_scenario(scenario_spec(scenario, run), seed, days, customers)
        folder = write_dataset(simulation, manifest, out)
        seconds = time.perf_counter() - started
        count = simulation.transactions.height
        print(
            f"wrote {count:,} transactions and {simulation.labels.height:,} labels to "
            f"{folder} in {seconds:.1f}s ({count / seconds:,.0f} transactions/s); manifest: "
            f"{len(manifest['change_points'])} change point(s)"
        )

    return _or_2(simulate)


def replay(
    ctx: typer.Context,
    source: Annotated[
        str,
        typer.Argument(
            metavar="SOURCE", help="scenario name or YAML, simulate-data folder, or file"
        ),
    ],
    speed: Annotated[
        str, typer.Option(help="'max' (as fast as possible), 'realtime', or N (N x faster)")
    ] = "max",
    wait_for_kafka: Annotated[
        float,
        typer.Option(
            metavar="SECONDS",
            callback=positive,
            help=(
                "how long a broker outage is waited out (batches are sent again) before "
                "the replay gives up"
            ),
        ),
    ] = 300.0,
    mapping: Mapping = None,
    map_entries: MapEntries = None,
    seed: Seed = None,
    days: Days = None,
    customers: Customers = None,
    change_day: ChangeDay = None,
) -> int:
    from producers.events import encode_events
    from producers.replay import Replayer, ReplayError
    from stream.runtime.topics import ensure_topics
    from stream.sources import ERRORS, ScenarioOverrides, SourceSpec, load_source, parse_speed

    settings = session(ctx).settings()
    pace = parse_speed(speed)
    spec = SourceSpec(
        source,
        mapping,
        tuple(map_entries or ()),
        ScenarioOverrides(seed, days, customers, change_day),
    )
    try:
        loaded = load_source(spec)
    except ERRORS as exc:
        print(f"fraudstream: {exc}", file=sys.stderr)
        return 2
    report_rejected(loaded.rejected)
    events = encode_events(loaded.transactions, loaded.labels)
    ensure_topics(settings)
    # a broker outage is reported once by the replayer, not every 100 ms by the client
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    with progress_bar("events") as bar:
        replayer = Replayer(
            settings.kafka.bootstrap_servers,
            (settings.topics.name("transactions"), settings.topics.name("labels")),
            pace,
            bar.report,
            retry_seconds=wait_for_kafka,
        )
        try:
            summary = replayer.run(events)
        except ReplayError as exc:
            bar.close()
            print(f"replay stopped: {exc}; {replayer.summary.line()}", file=sys.stderr)
            return 1
    print(summary.line())
    if summary.failed:
        return 1
    return EXIT_ROWS_REJECTED if loaded.rejected else 0


def report_rejected(rejected: list[tuple[int, str]]) -> None:
    """The first 20 rejected rows of a foreign file and how many there were, on stderr."""
    for row, reason in rejected[:20]:
        print(f"row {row}: {reason}", file=sys.stderr)
    if rejected:
        print(
            f"{len(rejected):,} row(s) rejected and not replayed (listed above"
            f"{', first 20' if len(rejected) > 20 else ''})",
            file=sys.stderr,
        )


def drift_report(
    folder: Annotated[
        Path,
        typer.Argument(
            metavar="FOLDER",
            help=(
                "a folder with reference.npz and current.npz (as the worker "
                "saves them on a data-drift alarm), or where to write them"
            ),
        ),
    ],
    scenario: Annotated[
        str | None, typer.Option(help="on demand: build both windows from this scenario")
    ] = None,
    reference: Annotated[
        str, typer.Option(metavar="DAYS", help="scenario days of the reference window, as FROM:TO")
    ] = "0:7",
    current: Annotated[
        str, typer.Option(metavar="DAYS", help="scenario days of the current window")
    ] = "14:21",
    customers: Annotated[int, typer.Option(callback=positive)] = 500,
) -> int:
    from monitoring.reports import build_report

    os.nice(10)  # a worker starts this: scoring comes first

    def report() -> None:
        if scenario:
            _scenario_windows(folder, scenario, reference, current, customers)
        summary = build_report(folder)
        print(
            f"report: {folder / 'report.html'} (and report.json); "
            f"{summary.get('drifted_count', 0):.0f} drifted column(s), Evidently's verdict: "
            f"{', '.join(summary['drifted']) or 'none'}"
        )

    return _or_2(report)


def _scenario_windows(
    folder: Path, scenario: str, reference: str, current: str, customers: int
) -> None:
    import asyncio

    from features.vector import FEATURE_NAMES
    from monitoring.reports import save_windows
    from producers.dataset import DatasetError
    from producers.scenario import load_scenario, run_scenario
    from stream.offline import replay_features

    simulation, _ = run_scenario(load_scenario(scenario), customers=customers)
    records = asyncio.run(replay_features(simulation.events()))
    start = float(simulation.transactions["event_time"][0]) // 86400 * 86400

    def window(days: str) -> dict[str, list[float]]:
        first, _, last = days.partition(":")
        lo, hi = start + float(first) * 86400, start + float(last) * 86400
        rows = [r.features for r in records.values() if r is not None and lo <= r.event_time < hi]
        if not rows:
            raise DatasetError(f"no transaction in days {days} of {scenario}")
        return {name: [row[name] for row in rows] for name in FEATURE_NAMES}

    save_windows(folder, window(reference), window(current))


def _or_2(action: Callable[[], object]) -> int:
    """Run ``action``; a source that cannot be read is exit 2, its message on stderr."""
    from stream.sources import ERRORS  # (polars and the producers: not for every command)

    try:
        action()
    except ERRORS as exc:
        print(f"fraudstream: {exc}", file=sys.stderr)
        return 2
    return 0
