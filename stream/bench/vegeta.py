"""Open-loop, constant-rate HTTP load with vegeta, and what came back.

vegeta (``go install github.com/tsenart/vegeta/v12@v12.13.0``; installed into
``.cache/go/bin`` when missing) sends each request on schedule whatever the
answers, from its own process: queueing shows as latency, never as a lower
offered rate.
"""

from __future__ import annotations

import base64
import csv
import json
import os
import resource
import secrets
import shutil
import subprocess
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

VEGETA = "github.com/tsenart/vegeta/v12@v12.13.0"
#: A rate is sustained when every answer is 200 and p99 is at most this (ms).
SUSTAINED_P99_MS = 10.0


@dataclass
class Attack:
    """One constant-rate attack and what came back."""

    target: str
    rate: float
    seconds: float
    codes: Counter[int] = field(default_factory=Counter)
    #: Latencies (ms) by status code ...
    latencies: dict[int, list[float]] = field(default_factory=dict)
    #: ... and when each request was sent (seconds after the attack's first), in that order.
    sent_at: dict[int, list[float]] = field(default_factory=dict)
    generator_cpu_s: float = 0.0

    def add(self, code: int, latency_ms: float, sent_at: float) -> None:
        """Note one answer: its status (0: no answer), latency, and when it was sent."""
        self.codes[code] += 1
        self.latencies.setdefault(code, []).append(latency_ms)
        self.sent_at.setdefault(code, []).append(sent_at)

    def quantile(self, q: float, code: int | None = None, since: float = 0.0) -> float:
        """The ``q`` quantile of the latencies (ms) of the answers with status ``code`` (None:
        all), of the requests sent ``since`` seconds into the attack or later.

        >>> a = Attack("api", 3.0, 1.0)
        >>> for answer in ((200, 1.0, 0.0), (503, 90.0, 0.1), (200, 3.0, 0.6), (503, 2.0, 0.7)):
        ...     a.add(*answer)
        >>> a.quantile(1.0), a.quantile(1.0, 503), a.quantile(1.0, 503, since=0.5)
        (90.0, 90.0, 2.0)
        """
        values = sorted(
            v
            for c, vs in self.latencies.items()
            if code in (None, c)
            for v, at in zip(vs, self.sent_at.get(c, [0.0] * len(vs)), strict=True)
            if at >= since
        )
        if not values:
            return float("nan")
        return values[min(len(values) - 1, int(q * len(values)))]

    @property
    def sent(self) -> int:
        return sum(self.codes.values())

    @property
    def clean(self) -> bool:
        """Every request answered 200."""
        return self.sent > 0 and self.codes.get(200, 0) == self.sent

    @property
    def sustained(self) -> bool:
        return self.clean and self.quantile(0.99) <= SUSTAINED_P99_MS

    def line(self) -> str:
        codes = ", ".join(f"{c or 'error'}: {n}" for c, n in sorted(self.codes.items()))
        refused = ""
        if self.codes[503] and self.codes[200]:  # shedding: the refusals and the rest apart
            refused = (
                f"  (503 p50 {self.quantile(0.5, 503):.2f}, p99 {self.quantile(0.99, 503):.2f};"
                f" 200 p99 {self.quantile(0.99, 200):.2f} ms)"
            )
        return (
            f"{self.target:28s} {self.rate:7,.0f}/s  p50 {self.quantile(0.5):7.2f}  "
            f"p95 {self.quantile(0.95):7.2f}  p99 {self.quantile(0.99):7.2f}  "
            f"max {self.quantile(1.0):8.2f} ms  [{codes}]  generator CPU "
            f"{self.generator_cpu_s:.1f} s{refused}"
        )


def vegeta(cache: Path) -> Path:
    """The vegeta binary: on PATH, or installed into ``cache`` with ``go install``."""
    found = shutil.which("vegeta")
    if found:
        return Path(found)
    binary = (cache / "go" / "bin" / "vegeta").absolute()  # go install wants GOBIN absolute
    if binary.exists():
        return binary
    go = shutil.which("go") or (
        "/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None
    )
    if go is None:
        raise RuntimeError(
            "bench api needs vegeta (an open-loop load generator): install Go, "
            f"or `go install {VEGETA}` yourself"
        )
    env = {**os.environ, "GOBIN": str(binary.parent), "GOFLAGS": "-mod=mod"}
    subprocess.run([go, "install", VEGETA], check=True, env=env)
    return binary


def attack(
    binary: Path,
    target: str,
    url: str,
    bodies: Sequence[bytes],
    rate: float,
    seconds: float,
    folder: Path,
) -> Attack:
    """``rate`` requests/s for ``seconds`` to ``url`` (POST, JSON bodies in turn)."""
    targets = folder / f"targets-{secrets.token_hex(3)}.json"
    with targets.open("w") as out:
        for body in bodies:
            out.write(
                json.dumps(
                    {
                        "method": "POST",
                        "url": url,
                        "header": {"Content-Type": ["application/json"]},
                        "body": base64.b64encode(body).decode(),
                    }
                )
                + "\n"
            )
    results = folder / f"results-{secrets.token_hex(3)}.bin"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with results.open("wb") as out:
        subprocess.run(
            [
                str(binary),
                "attack",
                "-format=json",
                f"-targets={targets}",
                f"-rate={rate:g}/1s",
                f"-duration={seconds:g}s",
                "-timeout=5s",
                "-keepalive=true",
            ],
            stdout=out,
            check=True,
        )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    encoded = subprocess.run(
        [str(binary), "encode", "-to", "csv", str(results)], capture_output=True, check=True
    ).stdout.decode()
    result = Attack(
        target,
        rate,
        seconds,
        generator_cpu_s=(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime),
    )
    rows = list(csv.reader(encoded.splitlines()))
    first = min((int(row[0]) for row in rows), default=0)  # (ns since the epoch)
    for row in rows:
        result.add(int(row[1]), int(row[2]) / 1e6, (int(row[0]) - first) / 1e9)
    targets.unlink()
    results.unlink()
    return result
