"""``fraudstream scorecard SOURCE``: replay a stream embedded and judge what happened.

SOURCE is a scenario (name or YAML), a ``simulate-data`` folder, or a
foreign CSV/Parquet file with ``--mapping``/``--map``. The events go through
the worker's own scoring, learning and drift code without any server
(:mod:`stream.scorecard.embedded`); the folder ``--out`` receives ``scorecard.json``,
the plots and ``report.html`` (:mod:`stream.scorecard`,
:mod:`stream.scorecard.report`). Each alarm is printed as it fires.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from stream.cli.data import (
    EXIT_ROWS_REJECTED,
    Customers,
    Days,
    MapEntries,
    Mapping,
    Seed,
    report_rejected,
)
from stream.cli.options import at_least_zero, progress_bar, session
from stream.settings import Settings

if TYPE_CHECKING:  # nothing heavy at import: the CLI imports this to build its commands
    from monitoring.drift.base import DriftEvent
    from stream.scorecard.judge import ScorecardOptions
    from stream.scorecard.options import EmbeddedOptions, EmbeddedResult
    from stream.sources import Source, SourceSpec

NonNegative = Annotated[float, typer.Option(callback=at_least_zero)]


def register(app: typer.Typer) -> None:
    app.command(
        "scorecard",
        help=(
            "replay a scenario, dataset or foreign file embedded (no "
            "servers) and write its scorecard: metrics per day, alarms "
            "against change points, plots, report.html"
        ),
    )(scorecard)


@dataclass(frozen=True)
class Plan:
    """Everything a scorecard run needs, checked."""

    source: Source
    name: str
    out: Path
    embedded: EmbeddedOptions
    judging: ScorecardOptions
    plots: bool


@dataclass(frozen=True)
class Choices:
    """What the command line chose beyond the source (see ``fraudstream scorecard --help``)."""

    out: Path | None = None
    model: str | None = None
    compare: tuple[str, ...] = ()
    promote: bool = False
    freeze_after_days: float = 14.0
    max_delay_hours: float = 72.0
    warm_up_days: float = 7.0
    plots: bool = True
    feature_signal: bool = False


def scorecard(
    ctx: typer.Context,
    source: Annotated[
        str,
        typer.Argument(
            metavar="SOURCE",
            help=(
                "scenario name or YAML, simulate-data folder, or CSV/Parquet "
                "file (with --mapping or --map)"
            ),
        ),
    ],
    out: Annotated[
        Path | None, typer.Option(help="folder to write into (default: scorecards/<source name>)")
    ] = None,
    mapping: Mapping = None,
    map_entries: MapEntries = None,
    seed: Seed = None,
    days: Days = None,
    customers: Customers = None,
    change_day: Annotated[
        float | None,
        typer.Option(
            callback=at_least_zero,
            help=(
                "move the scenario's first change (and the others with it) to this day; the run "
                "lasts as long after it as before (or --days). The detectors start once the "
                "feature state is drift.state_maturity_days old (30 by default), so the built-in "
                "28-day scenarios need this"
            ),
        ),
    ] = None,
    model: Annotated[str | None, typer.Option(help="the champion (default: model.name)")] = None,
    compare: Annotated[
        list[str] | None,
        typer.Option(
            metavar="MODEL",
            help="a challenger scored side by side in shadow (repeatable, or comma-separated)",
        ),
    ] = None,
    promote: Annotated[
        bool,
        typer.Option(
            "--promote",
            help=(
                "promote a --compare model that beats the serving one on the latest "
                "labels (the worker's rule: drift.auto_promote_labels, _margin and "
                "_alpha, a paired bootstrap on AP); the 'served' scores are judged"
            ),
        ),
    ] = False,
    freeze_after_days: Annotated[
        float,
        typer.Option(
            callback=at_least_zero,
            help="the frozen baseline stops learning after this many days (0: no baseline)",
        ),
    ] = 14.0,
    max_delay_hours: Annotated[
        float,
        typer.Option(
            callback=at_least_zero, help="an alarm later than this after a change counts as false"
        ),
    ] = 72.0,
    warm_up_days: Annotated[
        float,
        typer.Option(
            callback=at_least_zero, help="'after warm-up' metrics leave out these first days"
        ),
    ] = 7.0,
    no_plots: Annotated[bool, typer.Option("--no-plots", help="only scorecard.json")] = False,
    feature_signal: Annotated[
        bool,
        typer.Option(
            "--feature-signal",
            help=(
                "also judge each feature alone: its non-zero share and "
                "univariate AP (keeps every vector: 4 bytes a feature a "
                "transaction)"
            ),
        ),
    ] = False,
) -> int:
    from stream.scorecard.judge import summary_lines
    from stream.sources import ScenarioOverrides, SourceSpec

    spec = SourceSpec(
        source,
        mapping,
        tuple(map_entries or ()),
        ScenarioOverrides(seed, days, customers, change_day),
    )
    compared = tuple(name for entry in compare or () for name in entry.split(",") if name)
    choices = Choices(
        out,
        model,
        compared,
        promote,
        freeze_after_days,
        max_delay_hours,
        warm_up_days,
        not no_plots,
        feature_signal,
    )
    p = plan(spec, choices, session(ctx).settings())
    report_rejected(p.source.rejected)
    with progress_bar("events") as bar:
        card = make_scorecard(p, bar.report, lambda event: bar.write(alarm_line(event)))
    print("\n".join(summary_lines(card)))
    print(
        f"wrote {p.out / 'scorecard.json'}"
        + ("" if not p.plots else f" and {p.out / 'report.html'}")
    )
    return EXIT_ROWS_REJECTED if p.source.rejected else 0


def plan(spec: SourceSpec, choices: Choices, settings: Settings) -> Plan:
    """Check the choices and load the source (errors name the argument)."""
    from models.factory import build_model
    from stream.scorecard.judge import ScorecardOptions
    from stream.scorecard.options import EmbeddedOptions, Promotion
    from stream.sources import load_source

    model = choices.model or settings.model.name
    for name in [model, *choices.compare]:
        build_model(name)  # an unknown name fails here, listing the known ones
    if choices.promote and not choices.compare:
        raise ValueError("--promote: name the challengers it may promote with --compare")
    source = load_source(spec)
    if source.transactions.is_empty():
        raise ValueError(f"{spec.source}: no transactions to replay")
    name = (source.manifest or {}).get("scenario") or Path(spec.source).stem
    drift = settings.drift
    embedded = EmbeddedOptions(
        model=model,
        compare=choices.compare,
        snapshot_every_labels=settings.model.snapshot_every_labels,
        freeze_after_days=choices.freeze_after_days or None,
        allowed_lateness=settings.features.allowed_lateness_seconds,
        threshold=settings.model.threshold,
        drift=drift if drift.enabled else None,
        watched=drift.features,
        keep_vectors=choices.feature_signal,
        promote=Promotion(
            drift.auto_promote_labels, drift.auto_promote_margin, drift.auto_promote_alpha
        )
        if choices.promote
        else None,
    )
    judging = ScorecardOptions.of(
        settings.model, max_delay=choices.max_delay_hours * 3600, warm_up_days=choices.warm_up_days
    )
    out = choices.out or Path("scorecards") / re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    return Plan(source, name, out, embedded, judging, choices.plots)


def alarm_line(event: DriftEvent) -> str:
    """How an alarm is printed as it fires."""
    from stream.scorecard.judge import iso

    return (
        f"ALARM {event.detector} on {event.subject} = {event.magnitude:.4g} at "
        f"{iso(event.first_seen)} (change from {iso(event.changed_at)})"
    )


def make_scorecard(
    p: Plan,
    progress: Callable[[int, int, float], object] | None = None,
    on_alarm: Callable[[DriftEvent], object] | None = None,
) -> dict[str, Any]:
    """Run the plan and write its folder; the scorecard."""
    result, card = replay_and_judge(p, progress, on_alarm)
    write(p, result, card)
    return card


def replay_and_judge(
    p: Plan,
    progress: Callable[[int, int, float], object] | None = None,
    on_alarm: Callable[[DriftEvent], object] | None = None,
) -> tuple[EmbeddedResult, dict[str, Any]]:
    """Run the plan embedded; what happened and its scorecard (nothing written)."""
    from producers.generator import arrived_by_the_end
    from stream.scorecard.embedded import run_embedded
    from stream.scorecard.judge import scorecard
    from stream.sources import events_from_frames

    transactions, labels = p.source.transactions, p.source.labels
    # Labels after the traffic ends are never learned (a live stream has no end);
    # they still give the truth of the last transactions.
    arriving = arrived_by_the_end(transactions, labels)
    total = transactions.height + arriving.height
    result = run_embedded(
        events_from_frames(transactions, arriving), p.embedded, total, progress, on_alarm
    )
    truth = dict(labels.select("txn_id", "is_fraud").iter_rows())
    points = (p.source.manifest or {}).get("change_points", [])
    card = scorecard(
        result,
        truth,
        p.judging,
        points,
        {
            "name": p.name,
            "manifest": p.source.manifest is not None,
            "rejected_rows": len(p.source.rejected),
        },
    )
    return result, card


def write(p: Plan, result: EmbeddedResult, card: dict[str, Any]) -> None:
    p.out.mkdir(parents=True, exist_ok=True)
    (p.out / "scorecard.json").write_text(json.dumps(card, indent=1) + "\n")
    if p.plots:
        from stream.scorecard.report import write_html, write_plots

        plots = write_plots(p.out, result, card, p.embedded.drift)
        write_html(p.out / "report.html", card, plots)
