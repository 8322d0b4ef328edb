"""Replay into the real broker: every event exactly once, in order per card; foreign files too."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition

from producers.events import encode_events
from producers.replay import Replayer
from producers.scenario import load_scenario, run_scenario
from stream.runtime.topics import ensure_topics
from stream.settings import Settings, to_env
from tests.support import REPO, RealServers, isolated_settings, num, replay_into
from tests.unit.test_foreign_data import CSV, MAPPING

pytestmark = pytest.mark.integration


def consume_all(settings: Settings, topic: str) -> dict[int, list[dict[str, object]]]:
    """Every record of ``topic`` (up to its end offsets now), by partition, in order."""
    name = settings.topics.name(topic)
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap_servers,
        auto_offset_reset="earliest",
        group_id=None,
        consumer_timeout_ms=20_000,
    )
    partitions = [TopicPartition(name, p) for p in consumer.partitions_for_topic(name) or ()]
    consumer.assign(partitions)
    consumer.seek_to_beginning()
    end = consumer.end_offsets(partitions)
    out: dict[int, list[dict[str, object]]] = defaultdict(list)
    try:
        while any(consumer.position(tp) < end[tp] for tp in partitions):
            for tp, messages in consumer.poll(timeout_ms=1000).items():
                out[tp.partition].extend(json.loads(m.value) for m in messages)
    finally:
        consumer.close()
    return out


def test_a_scenario_replay_delivers_every_event_once_in_order_per_card(
    real_servers: RealServers,
) -> None:
    settings = isolated_settings(real_servers)
    simulation, _ = run_scenario(load_scenario("concept_drift"), days=3, customers=200)
    summary, count = replay_into(settings, simulation)
    assert summary.failed == 0 and summary.sent == count
    txns = consume_all(settings, "transactions")
    labels = consume_all(settings, "labels")
    got = [str(r["txn_id"]) for records in txns.values() for r in records]
    assert sorted(got) == sorted(simulation.transactions["txn_id"].to_list())  # once each
    assert len({r["txn_id"] for rs in labels.values() for r in rs}) == simulation.labels.height
    assert sum(len(rs) for rs in labels.values()) == simulation.labels.height
    cards_seen_in: dict[object, set[int]] = defaultdict(set)
    for partition, records in txns.items():
        last: dict[object, str] = {}
        for record in records:
            card = record["card_id"]
            cards_seen_in[card].add(partition)
            assert str(record["event_time"]) >= last.get(card, ""), card
            last[card] = str(record["event_time"])
    assert all(len(parts) == 1 for parts in cards_seen_in.values())  # one partition per card


def test_a_foreign_csv_replays_and_its_bad_rows_are_reported(
    real_servers: RealServers,
    tmp_path: Path,
) -> None:
    settings = isolated_settings(real_servers)
    (tmp_path / "data.csv").write_text(CSV)
    (tmp_path / "mapping.yaml").write_text(MAPPING)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "stream.cli",
            "replay",
            str(tmp_path / "data.csv"),
            "--mapping",
            str(tmp_path / "mapping.yaml"),
            "--speed",
            "max",
        ],
        capture_output=True,
        text=True,
        env={**to_env(settings), "PATH": "/usr/bin:/bin"},
        cwd=REPO,
        timeout=120,
    )
    assert done.returncode == 3, done.stderr  # rows were rejected (and reported)
    assert "row 3: amount: not a number" in done.stderr
    assert "5 row(s) rejected and not replayed" in done.stderr
    assert "sent 4 events" in done.stdout and "failed 0" in done.stdout
    txns = consume_all(settings, "transactions")
    assert sorted(str(r["txn_id"]) for rs in txns.values() for r in rs) == ["a1", "a2"]


def test_a_paced_replay_never_runs_ahead_of_its_clock(real_servers: RealServers) -> None:
    settings = isolated_settings(real_servers)
    ensure_topics(settings)
    simulation, _ = run_scenario(load_scenario("baseline"), days=1, customers=20)
    events = encode_events(simulation.transactions, simulation.labels.head(0))
    span = num(events["time"].max()) - num(events["time"].min())
    speed = span / 2.0  # the whole day in about two seconds
    summary = Replayer(
        settings.kafka.bootstrap_servers,
        (settings.topics.name("transactions"), settings.topics.name("labels")),
        speed=speed,
    ).run(events)
    assert summary.failed == 0 and summary.sent == events.height
    assert summary.seconds >= 2.0 * 0.95
