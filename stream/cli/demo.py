"""``fraudstream demo``: services, worker, API and a drift scenario replayed, until Ctrl-C
(:mod:`stream.demo` runs it)."""

from __future__ import annotations

from typing import Annotated

import typer

from stream.cli.options import at_least_zero, positive, session


def register(app: typer.Typer) -> None:
    app.command(
        "demo", help="services + worker + API + a drift scenario replayed; Ctrl-C stops all"
    )(demo)


def demo(
    ctx: typer.Context,
    scenario: Annotated[
        str, typer.Option(help="built-in scenario name or YAML file (see `scenarios list`)")
    ] = "sudden_covariate_shift",
    speed: Annotated[
        float,
        typer.Option(
            callback=positive,
            help="replay N times faster than the scenario's clock (20000: a day in about 4 s)",
        ),
    ] = 20_000.0,
    customers: Annotated[int, typer.Option(callback=positive)] = 500,
    seed: Annotated[int | None, typer.Option()] = None,
    change_day: Annotated[
        float,
        typer.Option(
            callback=at_least_zero,
            help=(
                "move the scenario's first change to this day (the detectors start once the "
                "feature state is drift.state_maturity_days old, 30 by default); the run "
                "lasts as long after it as the scenario did"
            ),
        ),
    ] = 40.0,
    duration: Annotated[
        float | None,
        typer.Option(
            callback=positive, help="stop by itself after this many seconds (default: until Ctrl-C)"
        ),
    ] = None,
) -> int:
    from stream.demo import DemoOptions, run_demo

    return run_demo(
        session(ctx).settings(), DemoOptions(scenario, speed, customers, seed, change_day, duration)
    )
