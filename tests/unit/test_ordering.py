"""Event-time order across partitions for the drift detectors (monitoring.ordering)."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from features.store import ScoredRecord
from monitoring.drift.config import DriftConfig
from monitoring.drift_metrics import DriftMetrics
from monitoring.monitor import DriftMonitor
from monitoring.ordering import EventTimeOrder

#: Partitions as sorted lists of event times; a schedule of which one to read next.
partitions = st.lists(
    st.lists(st.integers(0, 1000), min_size=1, max_size=40).map(sorted), min_size=1, max_size=5
)


Read = tuple[float, int, bool]  # event time, partition, whether it had more waiting


def catch_up(sources: list[list[float]], schedule: list[int]) -> list[list[Read]]:
    """A worker catching up on a backlog, as fetched batches: the first brings every
    partition's first record, then partitions are read one record at a time in the
    order ``schedule`` says. A record is ``behind`` unless it is its partition's last."""
    left = {s: list(times) for s, times in enumerate(sources)}
    batches = [[(left[s].pop(0), s, bool(left[s])) for s in list(left)]]
    for pick in schedule:
        open_ = [s for s in left if left[s]]
        if not open_:
            break
        s = open_[pick % len(open_)]
        batches.append([(left[s].pop(0), s, bool(left[s]))])
    for s in left:  # whatever the schedule did not reach
        while left[s]:
            batches.append([(left[s].pop(0), s, bool(left[s]))])
    return batches


def replay(order: EventTimeOrder[float], batches: list[list[Read]]) -> list[float]:
    out: list[float] = []
    for batch in batches:
        out += order.add_many((time, time, source, behind) for time, source, behind in batch)
        assert len(order) <= order.max_held
    return out


@settings(max_examples=200, deadline=None)
@given(partitions, st.lists(st.integers(0, 10), max_size=200))
def test_a_backlog_read_partition_by_partition_comes_out_in_event_time_order(
    sources: list[list[int]],
    schedule: list[int],
) -> None:
    order: EventTimeOrder[float] = EventTimeOrder(max_held=10_000)
    out = replay(order, catch_up([[float(t) for t in s] for s in sources], schedule))
    assert out == sorted(t for s in sources for t in s)  # everything, once, in order
    assert len(order) == 0 and order.released_early == 0


@settings(max_examples=100, deadline=None)
@given(partitions, st.lists(st.integers(0, 10), max_size=200), st.integers(0, 8))
def test_no_more_than_max_held_are_held_and_the_early_ones_are_counted(
    sources: list[list[int]],
    schedule: list[int],
    max_held: int,
) -> None:
    order: EventTimeOrder[float] = EventTimeOrder(max_held)
    out = replay(order, catch_up([[float(t) for t in s] for s in sources], schedule))
    assert sorted(out) == sorted(t for s in sources for t in s)
    if order.released_early == 0:  # only an early release can break the order
        assert out == sorted(out)


def test_a_revoked_partition_stops_holding_the_others_back() -> None:
    order: EventTimeOrder[str] = EventTimeOrder(max_held=100)
    assert order.add(1.0, "p0@1", source=0, behind=True) == ["p0@1"]
    assert order.add(9.0, "p1@9", source=1, behind=True) == []  # partition 0 is at 1
    assert order.forget([0]) == ["p1@9"]


def _monitor(registry: CollectorRegistry) -> DriftMonitor:
    config = DriftConfig(
        reference_size=600, window_size=300, check_every=50, warm_up=0, reference_days=0
    )
    return DriftMonitor(config, ["amount"], 0.5, DriftMetrics.create(registry))


def test_catching_up_on_two_unlike_partitions_raises_no_drift_when_read_in_event_time() -> None:
    """Partition 0's cards score low and trade half as often as partition 1's, which score
    higher. Read at equal counts, partition 0 runs ahead in time and partition 1 is read
    alone at the end: the recent window is all high scores. In event-time order the
    traffic is the same mix all along, and no detector fires."""
    rnd = random.Random(7)
    day = 86400.0
    sources = [sorted(rnd.uniform(0, 30 * day) for _ in range(n)) for n in (600, 1200)]
    records = {
        s: [
            ScoredRecord(
                f"t{s}-{i}",
                f"c{s}",
                "p",
                t,
                {"amount": rnd.gauss(3 + s, 1)},
                rnd.uniform(0.0, 0.2) if s == 0 else rnd.uniform(0.1, 0.5),
                1,
            )
            for i, t in enumerate(times)
        ]
        for s, times in enumerate(sources)
    }
    reads = catch_up(sources, [0, 1] * 2000)  # equal counts from each partition
    by_time = {(s, r.event_time): r for s, rs in records.items() for r in rs}

    def run(ordered: bool) -> tuple[list[str], CollectorRegistry]:
        registry = CollectorRegistry()
        monitor = _monitor(registry)
        events = []
        for batch in reads:
            events += monitor.on_scored_batch(
                [
                    (by_time[(source, time)], source, behind and ordered)
                    for time, source, behind in batch
                ]
            )
        return sorted({e.detector for e in events}), registry

    unordered, _ = run(ordered=False)
    assert "prediction_psi" in unordered and "psi" in unordered  # the catch-up artefact
    ordered, registry = run(ordered=True)
    assert ordered == []
    assert registry.get_sample_value("fraudstream_drift_held_records", {"stream": "scored"}) == 0
    assert (
        registry.get_sample_value("fraudstream_drift_released_early_total", {"stream": "scored"})
        is None
    )
