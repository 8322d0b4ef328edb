"""``fraudstream bench simulate|replay``: generation and replay throughput.

- ``simulate``: the baseline scenario at 20,000 customers for 28 days
  (about 1.2 million transactions), generated and written to Parquet.
- ``replay``: the baseline scenario (transactions and labels) sent as fast
  as possible to the local Kafka broker (started if needed), every delivery
  confirmed (``acks=all``).

Each is run ``runs`` times; the median is reported.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from producers.dataset import write_dataset
from producers.events import encode_events
from producers.replay import Replayer
from producers.scenario import load_scenario, run_scenario
from stream.settings import Settings, TopicSettings


def bench_data(suite: str, settings: Settings, runs: int) -> int:
    rates = []
    for run in range(runs):
        rate = _simulate() if suite == "simulate" else _replay(settings, run)
        rates.append(rate)
        unit = "transactions/s to Parquet" if suite == "simulate" else "events/s delivered"
        print(f"run {run + 1}: {rate:,.0f} {unit}")
    print(f"median: {statistics.median(rates):,.0f}")
    return 0


def _simulate() -> float:
    started = time.perf_counter()
    simulation, manifest = run_scenario(load_scenario("baseline"), customers=20_000)
    with tempfile.TemporaryDirectory() as folder:
        write_dataset(simulation, manifest, Path(folder))
    seconds = time.perf_counter() - started
    print(f"  {simulation.transactions.height:,} transactions in {seconds:.2f}s")
    return simulation.transactions.height / seconds


def _replay(settings: Settings, run: int) -> float:
    from stream.runtime.topics import ensure_topics
    from stream.services import LocalServices

    services = LocalServices(settings.services)
    services.up(only={"kafka"})
    topics = TopicSettings(prefix=f"bench-{int(time.time())}-{run}-")
    settings = settings.model_copy(
        update={
            "topics": topics,
            "kafka": settings.kafka.model_copy(
                update={"bootstrap_servers": services.kafka.address}
            ),
        }
    )
    ensure_topics(settings)
    simulation, _ = run_scenario(load_scenario("baseline"), customers=4000)
    events = encode_events(simulation.transactions, simulation.labels)
    replayer = Replayer(
        settings.kafka.bootstrap_servers, (topics.name("transactions"), topics.name("labels"))
    )
    summary = replayer.run(events)
    print(f"  {summary.line()}")
    return summary.rate
