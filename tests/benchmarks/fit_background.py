"""Background batch fits: in a thread against in a child process, in one invocation.

``python -m tests.benchmarks.fit_background [rounds]`` (default 2 rounds, alternating):

1. **A fit beside a busy interpreter**: a gradient-boosting fit of 200,000 x 46 rows (sampled
   to the frauds and 50,000 genuine ones, as the hybrid does), while this process's main
   thread runs a Python loop; the fit's time and the loop's steps per second, against each
   alone (the baseline).
2. **A hybrid champion learning flat out**: 600,000 labels at 6,000 a day (100 days, a fit
   due every 3 days); labels per second, fits adopted, and the labels and seconds from each
   fit's start to its adoption.

Nothing else should run meanwhile (the machine has 2 cores); the load average is printed.
"""

from __future__ import annotations

import functools
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any

import numpy as np

import models.batch as batch
from features.vector import FEATURE_NAMES
from models.batch import batch_part, in_background
from models.batch_fit import fit, sample
from models.calls import learn
from models.factory import build_model


def busy(seconds: float) -> int:
    """Python work like a learner's (a dict of floats walked again and again): steps done."""
    end = time.perf_counter() + seconds
    steps = 0
    vector = {f"f{i}": float(i) for i in range(46)}
    while time.perf_counter() < end:
        for _ in range(100):
            total = 0.0
            for value in vector.values():
                total += value * 1.0001
            vector["f0"] = total % 7
        steps += 100
    return steps


def beside_a_busy_loop(pool: Executor, job: tuple[Any, ...]) -> tuple[float, float]:
    """The fit's seconds in ``pool`` while this thread loops, and the loop's steps/s."""
    started = time.perf_counter()
    future = pool.submit(fit, *job)
    steps = spins = 0
    while not future.done():
        steps += busy(0.1)
        spins += 1
    future.result()
    return time.perf_counter() - started, steps / (spins * 0.1)


def learning_flat_out(labels: int = 600_000, per_day: int = 6000) -> str:
    """A hybrid learning ``labels`` in a tight loop with its fits in the background."""
    rng = np.random.default_rng(0)
    model = build_model("hybrid_gradient_boosting")
    in_background(model)
    part = batch_part(model)
    assert part is not None
    xs = rng.normal(0.0, 1.0, (labels, len(FEATURE_NAMES)))
    ys = rng.random(labels) < 0.01
    xs[ys] += 0.5
    started: tuple[int, float] | None = None
    lags: list[tuple[int, float]] = []
    fits = 0
    t0 = time.perf_counter()
    for i in range(labels):
        at = 1.7e9 + i * 86400 / per_day
        vector = dict(zip(FEATURE_NAMES, xs[i].tolist(), strict=True))
        learn(model, vector, bool(ys[i]), at - 7 * 86400, at)
        if part.fits != fits:
            fits = part.fits
            if started is not None:
                lags.append((i - started[0], time.perf_counter() - started[1]))
            started = None
        if started is None and (part._pending is not None):
            started = (i, time.perf_counter())
    seconds = time.perf_counter() - t0
    pending = part._pending is not None
    return (
        f"{labels / seconds:8,.0f} labels/s, fits adopted {part.fits}, one pending at the end: "
        f"{pending}; labels from a fit's start to its adoption {[n for n, _ in lags]}, "
        f"seconds {[round(s, 1) for _, s in lags]}"
    )


def main(rounds: int = 2) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200_000, len(FEATURE_NAMES)))
    y = rng.random(200_000) < 0.01
    x[y] += 0.5
    rows, shift = sample(y, 42, 50_000)
    assert rows is not None
    job = ("gradient_boosting", x[rows], y[rows], 42, None, shift)
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    alone_loop = busy(3.0) / 3.0
    started = time.perf_counter()
    fit(*job)
    print(f"alone:   fit {time.perf_counter() - started:6.2f} s, loop {alone_loop:9,.0f} steps/s")
    pools: dict[str, Callable[[], Executor]] = {
        "thread": lambda: ThreadPoolExecutor(1, thread_name_prefix="batch-fit"),
        "process": batch._background,
    }
    for _ in range(rounds):
        for name, make in pools.items():
            seconds, rate = beside_a_busy_loop(make(), job)
            print(f"{name:8s} fit {seconds:6.2f} s, loop {rate:9,.0f} steps/s (beside it)")
    original = batch._background
    for _ in range(rounds):
        for name, make in pools.items():
            batch._background = functools.cache(make)  # type: ignore[arg-type]
            print(f"{name:8s} learning flat out: {learning_flat_out()}", flush=True)
            batch._background = original
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
