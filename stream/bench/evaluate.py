"""Models on a simulated stream, prequentially: ``fraudstream bench models``.

The scenario's events are replayed in time order. Features come from the
offline replay (:func:`stream.offline.replay_features`, the stream's own
code), computed once. Each model then scores every transaction when it
happens and learns each label when it arrives (days later), so every metric
is prequential. A logistic regression that stops learning after
``freeze_after_days`` runs beside them: the "train once, then frozen"
baseline the online champion must beat.

Per model: average precision and the other metrics of
:class:`models.evaluation.Prequential` since the start and over transactions
after the freeze day; learning throughput (labels/s); scoring cost (us per
transaction); snapshot size and sign+pickle / verify+unpickle time.
"""

from __future__ import annotations

import asyncio
import hmac
import pickle
import time
from dataclasses import dataclass, field

from features.events import Label, Transaction
from features.store import ScoredRecord
from models.calls import fraud_probability, learn
from models.evaluation import Prequential
from models.factory import build_model
from models.snapshots import sign
from producers.generator import DAY, Simulation
from stream.offline import replay_features

FROZEN = "logistic_regression (frozen)"


@dataclass
class ModelRun:
    name: str
    metrics: Prequential = field(default_factory=Prequential)
    learned: int = 0
    scored: int = 0
    learn_seconds: float = 0.0
    score_seconds: float = 0.0
    snapshot_bytes: int = 0
    publish_ms: float = 0.0
    load_ms: float = 0.0

    @property
    def labels_per_second(self) -> float:
        return self.learned / self.learn_seconds if self.learn_seconds else float("nan")

    @property
    def score_us(self) -> float:
        return self.score_seconds / self.scored * 1e6 if self.scored else float("nan")


def evaluate(
    simulation: Simulation,
    names: list[str],
    freeze_after_days: float = 14.0,
) -> tuple[list[ModelRun], float]:
    """Run every model (and the frozen baseline) over ``simulation``; the runs and the
    freeze time."""
    events = simulation.events()
    records = asyncio.run(replay_features(events))
    first = min(e.event_time for e in events if isinstance(e, Transaction))
    freeze = (first // DAY) * DAY + freeze_after_days * DAY  # days count from midnight UTC
    runs = [_run(name, events, records, None) for name in names]
    runs.append(_run("logistic_regression", events, records, freeze, label=FROZEN))
    return runs, freeze


def _run(
    name: str,
    events: list[Transaction | Label],
    records: dict[str, ScoredRecord | None],
    freeze: float | None,
    label: str | None = None,
) -> ModelRun:
    model = build_model(name)
    run = ModelRun(label or name)
    scores: dict[str, tuple[float, str, float]] = {}
    for event in events:
        if isinstance(event, Transaction):
            record = records.get(event.txn_id)
            if record is None:
                continue
            started = time.perf_counter()
            score = fraud_probability(model, record.features)
            run.score_seconds += time.perf_counter() - started
            run.scored += 1
            scores[event.txn_id] = (score, event.card_id, event.event_time)
            continue
        known = scores.get(event.txn_id)
        record = records.get(event.txn_id)
        if known is None or record is None:
            continue
        run.metrics.record(known[0], event.is_fraud, known[1], known[2], event.event_time)
        if freeze is not None and event.event_time >= freeze:
            continue
        started = time.perf_counter()
        learn(model, record.features, event.is_fraud, record.event_time, event.event_time)
        run.learn_seconds += time.perf_counter() - started
        run.learned += 1
    _snapshot_costs(run, model)
    return run


def _snapshot_costs(run: ModelRun, model: object) -> None:
    key = b"bench-key"
    started = time.perf_counter()
    blob = pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)
    signature = sign(key, b"{}", blob)
    run.publish_ms = (time.perf_counter() - started) * 1e3
    started = time.perf_counter()
    assert hmac.compare_digest(sign(key, b"{}", blob), signature)
    pickle.loads(blob)
    run.load_ms = (time.perf_counter() - started) * 1e3
    run.snapshot_bytes = len(blob)


def table(runs: list[ModelRun], freeze: float) -> str:
    """A Markdown table of the runs."""
    lines = [
        "| model | AP since start | AP after freeze day | ROC AUC | card prec@100 | "
        "labels/s | score us/txn | snapshot KB | publish ms | load ms |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        everything = run.metrics.report()
        later = run.metrics.report(since=freeze)
        lines.append(
            f"| {run.name} | {everything['average_precision_all']:.3f} | "
            f"{later['average_precision_all']:.3f} | {everything['roc_auc_all']:.3f} | "
            f"{everything['card_precision_at_k_window']:.3f} | {run.labels_per_second:,.0f} | "
            f"{run.score_us:.0f} | {run.snapshot_bytes / 1024:.1f} | {run.publish_ms:.1f} | "
            f"{run.load_ms:.1f} |"
        )
    return "\n".join(lines)
