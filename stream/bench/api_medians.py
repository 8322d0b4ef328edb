"""``fraudstream bench api --runs N``: the whole bench N times, and the median of each
measure with every run's value (the machine is shared: one run's numbers move with
whatever else runs on it, by half or more within a day)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from typing import Any

Summary = dict[str, Any]


def _at(*path: str) -> Callable[[Summary], float]:
    def get(summary: Summary) -> float:
        found: Any = summary
        for key in path:
            if not isinstance(found, dict) or key not in found:
                return math.nan
            found = found[key]
        return float(found)

    return get


def _batch_best(summary: Summary) -> float:
    clean = [
        b["transactions_per_s"]
        for b in summary.get("batch", [])
        if set(b["codes"]) == {"200"} or set(b["codes"]) == {200}
    ]
    return max(clean, default=math.nan)


#: What is reported, by name: how each is read from one run's summary.
MEASURES: tuple[tuple[str, Callable[[Summary], float]], ...] = (
    ("one process sustained, req/s", _at("sustained", "api")),
    ("bare endpoint sustained, req/s", _at("sustained", "bare")),
    ("ratio to the bare endpoint", _at("ratio")),
    ("overload, refused p50 ms", _at("overload", "p50_503_ms")),
    ("overload, refused p99 ms", _at("overload", "p99_503_ms")),
    ("overload, accepted p99 ms", _at("overload", "p99_200_ms")),
    ("overload from 1 s, refused p50 ms", _at("overload", "steady_p50_503_ms")),
    ("overload from 1 s, refused p95 ms", _at("overload", "steady_p95_503_ms")),
    ("overload from 1 s, refused p99 ms", _at("overload", "steady_p99_503_ms")),
    ("overload from 1 s, accepted p99 ms", _at("overload", "steady_p99_200_ms")),
    ("accepted p99 at the sustained rate, ms", _at("overload", "p99_200_at_sustained_ms")),
    ("explain=true p99 overhead, ms", _at("explain_p99_overhead_ms")),
    ("batch of 100, clean, txn/s", _batch_best),
    ("N processes at 1,000/s, p95 ms", _at("production", "p95_ms")),
    ("N processes at 1,000/s, p99 ms", _at("production", "p99_ms")),
)


def medians(summaries: Sequence[Summary]) -> list[tuple[str, float, list[float]]]:
    """Each measure's median over the runs that have it, and every run's value.

    Parameters
    ----------
    summaries
        What :func:`stream.bench.api.bench_api` returned, run by run.

    >>> runs = [{"sustained": {"api": a, "bare": b}, "ratio": a / b} for a, b in
    ...         ((1500, 2000), (1750, 1750), (1250, 2000))]
    >>> for name, median, values in medians(runs)[:3]:
    ...     print(name, median, values)
    one process sustained, req/s 1500.0 [1500.0, 1750.0, 1250.0]
    bare endpoint sustained, req/s 2000.0 [2000.0, 1750.0, 2000.0]
    ratio to the bare endpoint 0.75 [0.75, 1.0, 0.625]
    """
    table = []
    for name, read in MEASURES:
        values = [read(s) for s in summaries]
        known = [v for v in values if not math.isnan(v)]
        table.append((name, statistics.median(known) if known else math.nan, values))
    return table


def report(summaries: Sequence[Summary], say: Callable[[str], object] = print) -> None:
    """Print :func:`medians`, a measure a line.

    Parameters
    ----------
    summaries
        What :func:`stream.bench.api.bench_api` returned, run by run.
    say
        Where the lines go.
    """
    say(f"medians of {len(summaries)} runs (every run's value after them):")
    for name, median, values in medians(summaries):
        say(f"  {name:40s} {median:9,.2f}   [{', '.join(f'{v:,.2f}' for v in values)}]")
