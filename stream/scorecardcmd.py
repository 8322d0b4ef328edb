"""``fraudstream scorecard SOURCE``: replay a stream embedded and judge what happened.

SOURCE is a scenario (name or YAML), a ``simulate-data`` folder, or a
foreign CSV/Parquet file with ``--mapping``/``--map``. The events go through
the worker's own scoring, learning and drift code without any server
(:mod:`stream.embedded`); the folder ``--out`` receives ``scorecard.json``,
the plots and ``report.html`` (:mod:`stream.scorecard`,
:mod:`stream.scorecard_report`). Each alarm is printed as it fires.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stream.datacmd import EXIT_ROWS_REJECTED, non_negative
from stream.settings import Settings

if TYPE_CHECKING:  # the CLI builds its parser with this module: nothing heavy at import
    from monitoring.drift.base import DriftEvent
    from stream.datacmd import Source
    from stream.embedded import EmbeddedOptions, EmbeddedResult
    from stream.scorecard import ScorecardOptions


def _positive_int(text: str) -> int:
    value = non_negative(text)
    if value != int(value) or value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be a whole number of at least 1")
    return int(value)


def _positive(text: str) -> float:
    value = non_negative(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be greater than 0")
    return value


def add_arguments(sub: argparse._SubParsersAction) -> None:
    card = sub.add_parser(
        "scorecard", help="replay a scenario, dataset or foreign file embedded (no servers) and "
                          "write its scorecard: metrics per day, alarms against change points, "
                          "plots, report.html")
    card.add_argument("source", help="scenario name or YAML, simulate-data folder, or CSV/Parquet "
                                     "file (with --mapping or --map)")
    card.add_argument("--out", type=Path, default=None,
                      help="folder to write into (default: scorecards/<source name>)")
    card.add_argument("--mapping", type=Path, help="column mapping file for a foreign file")
    card.add_argument("--map", action="append", default=[], metavar="FIELD=COLUMN",
                      help="a column mapping entry (repeatable) for a foreign file")
    card.add_argument("--seed", type=int, default=None, help="override the scenario's seed")
    card.add_argument("--days", type=_positive, default=None, help="override its length")
    card.add_argument("--customers", type=_positive_int, default=None,
                      help="override its size")
    card.add_argument("--change-day", type=non_negative, default=None,
                      help="move the scenario's first change (and the others with it) to this "
                           "day; the run lasts as long after it as before (or --days). The "
                           "detectors start once the feature state is drift.state_maturity_days "
                           "old (30 by default), so the built-in 28-day scenarios need this")
    card.add_argument("--model", default=None, help="the champion (default: model.name)")
    card.add_argument("--compare", nargs="+", default=[], metavar="MODEL",
                      help="challengers scored side by side in shadow")
    card.add_argument("--promote", action="store_true",
                      help="promote a --compare model that beats the serving one on the latest "
                           "labels (the worker's rule: drift.auto_promote_labels, _margin and "
                           "_alpha, a paired bootstrap on AP); the 'served' scores are judged")
    card.add_argument("--freeze-after-days", type=non_negative, default=14.0,
                      help="the frozen baseline stops learning after this many days "
                           "(0: no baseline)")
    card.add_argument("--max-delay-hours", type=non_negative, default=72.0,
                      help="an alarm later than this after a change counts as false")
    card.add_argument("--warm-up-days", type=non_negative, default=7.0,
                      help="'after warm-up' metrics leave out these first days")
    card.add_argument("--no-plots", action="store_true", help="only scorecard.json")
    card.add_argument("--feature-signal", action="store_true",
                      help="also judge each feature alone: its non-zero share and univariate AP "
                           "(keeps every vector: 4 bytes a feature a transaction)")


@dataclass(frozen=True)
class Plan:
    """Everything a scorecard run needs, checked."""

    source: Source
    name: str
    out: Path
    embedded: EmbeddedOptions
    judging: ScorecardOptions
    plots: bool


def plan(args: argparse.Namespace, settings: Settings) -> Plan:
    """Check the arguments and load the source (errors name the argument)."""
    from models.factory import build_model
    from stream.datacmd import load_source_and_manifest
    from stream.embedded import EmbeddedOptions, Promotion
    from stream.scorecard import ScorecardOptions

    model = args.model or settings.model.name
    for name in [model, *args.compare]:
        build_model(name)  # an unknown name fails here, listing the known ones
    if args.promote and not args.compare:
        raise ValueError("--promote: name the challengers it may promote with --compare")
    source = load_source_and_manifest(args)
    if source.transactions.is_empty():
        raise ValueError(f"{args.source}: no transactions to replay")
    name = (source.manifest or {}).get("scenario") or Path(args.source).stem
    drift = settings.drift
    embedded = EmbeddedOptions(
        model=model, compare=tuple(args.compare),
        snapshot_every_labels=settings.model.snapshot_every_labels,
        freeze_after_days=args.freeze_after_days or None,
        allowed_lateness=settings.features.allowed_lateness_seconds,
        threshold=settings.model.threshold,
        drift=drift.detector_config() if drift.enabled else None, watched=drift.features,
        keep_vectors=args.feature_signal,
        promote=Promotion(drift.auto_promote_labels, drift.auto_promote_margin,
                          drift.auto_promote_alpha) if args.promote else None)
    judging = ScorecardOptions.of(settings.model, max_delay=args.max_delay_hours * 3600,
                                  warm_up_days=args.warm_up_days)
    out = args.out or Path("scorecards") / re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    return Plan(source, name, out, embedded, judging, not args.no_plots)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from producers.replay import progress_bar
    from stream.scorecard import summary_lines

    p = plan(args, settings)
    for row, reason in p.source.rejected[:20]:
        print(f"row {row}: {reason}", file=sys.stderr)
    if p.source.rejected:
        print(f"{len(p.source.rejected):,} row(s) rejected and not replayed", file=sys.stderr)
    card = make_scorecard(p, progress_bar(lambda t: print(t, end="", file=sys.stderr,
                                                            flush=True)), print_alarm)
    print(file=sys.stderr)
    print("\n".join(summary_lines(card)))
    print(f"wrote {p.out / 'scorecard.json'}" + ("" if not p.plots else
                                                  f" and {p.out / 'report.html'}"))
    return EXIT_ROWS_REJECTED if p.source.rejected else 0


def print_alarm(event: DriftEvent) -> None:
    from stream.scorecard import iso

    print(f"\nALARM {event.detector} on {event.subject} = {event.magnitude:.4g} at "
          f"{iso(event.first_seen)} (change from {iso(event.changed_at)})",
          file=sys.stderr, flush=True)


def make_scorecard(p: Plan, progress: Callable[[int, int, float], object] | None = None,
                   on_alarm: Callable[[DriftEvent], object] | None = None) -> dict[str, Any]:
    """Run the plan and write its folder; the scorecard."""
    result, card = replay_and_judge(p, progress, on_alarm)
    write(p, result, card)
    return card


def replay_and_judge(p: Plan, progress: Callable[[int, int, float], object] | None = None,
                     on_alarm: Callable[[DriftEvent], object] | None = None,
                     ) -> tuple[EmbeddedResult, dict[str, Any]]:
    """Run the plan embedded; what happened and its scorecard (nothing written)."""
    from producers.generator import arrived_by_the_end
    from stream.embedded import events_from_frames, run_embedded
    from stream.scorecard import scorecard

    transactions, labels = p.source.transactions, p.source.labels
    # Labels after the traffic ends are never learned (a live stream has no end);
    # they still give the truth of the last transactions.
    arriving = arrived_by_the_end(transactions, labels)
    total = transactions.height + arriving.height
    result = run_embedded(events_from_frames(transactions, arriving), p.embedded, total,
                          progress, on_alarm)
    truth = dict(labels.select("txn_id", "is_fraud").iter_rows())
    points = (p.source.manifest or {}).get("change_points", [])
    card = scorecard(result, truth, p.judging, points,
                     {"name": p.name, "manifest": p.source.manifest is not None,
                      "rejected_rows": len(p.source.rejected)})
    return result, card


def write(p: Plan, result: EmbeddedResult, card: dict[str, Any]) -> None:
    p.out.mkdir(parents=True, exist_ok=True)
    (p.out / "scorecard.json").write_text(json.dumps(card, indent=1) + "\n")
    if p.plots:
        from stream.scorecard_report import write_html, write_plots

        plots = write_plots(p.out, result, card, p.embedded.drift)
        write_html(p.out / "report.html", card, plots)
