"""`fraudstream replay` through a broker outage: a private Kafka is killed (kill -9) for 20 s
in the middle of a paced replay and started again. The replay waits it out, sends again
what was not confirmed, exits 0, and every event is on the topics (some perhaps twice,
which the worker recognises as redeliveries)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kafka import KafkaConsumer

from producers.scenario import load_scenario, run_scenario
from stream.runtime.topics import ensure_topics
from stream.services.process import free_port
from stream.services.servers import KafkaServer
from stream.settings import KafkaSettings, ServicesSettings, Settings, TopicSettings, to_env
from tests.support import REPO, wait_for

pytestmark = pytest.mark.integration

DAYS, CUSTOMERS, REPLAY_SECONDS, OUTAGE_SECONDS = 10, 60, 16.0, 20.0


def _all_keys(bootstrap: str, topic: str, want: int) -> list[str]:
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
        consumer_timeout_ms=10_000,
    )
    ids: list[str] = []
    try:
        for message in consumer:
            ids.append(json.loads(message.value)["txn_id"])
            if len(set(ids)) >= want and len(ids) >= want:
                break
    finally:
        consumer.close()
    return ids


def test_a_replay_waits_out_a_broker_outage_and_loses_nothing(tmp_path: Path) -> None:
    services = ServicesSettings(
        state_dir=tmp_path,
        cache_dir=REPO / ".cache",
        kafka_port=free_port(),
        kafka_controller_port=free_port(),
        kafka_heap="256m",
    )
    kafka = KafkaServer(services, tmp_path / "kafka")
    process = kafka.process(kafka.prepare(services))
    process.start()
    try:
        wait_for(kafka.ready, 90, "the private Kafka")
        settings = Settings(
            kafka=KafkaSettings(bootstrap_servers=kafka.address, partitions=2),
            topics=TopicSettings(prefix="outage-"),
        )
        ensure_topics(settings)
        simulation, _ = run_scenario(load_scenario("baseline"), days=DAYS, customers=CUSTOMERS)
        span = DAYS * 86400.0
        log = (tmp_path / "replay.log").open("wb")
        replay = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "stream.cli",
                "replay",
                "baseline",
                "--days",
                str(DAYS),
                "--customers",
                str(CUSTOMERS),
                "--speed",
                str(span / REPLAY_SECONDS),
                "--wait-for-kafka",
                "120",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env={**os.environ, **to_env(settings)},
        )
        time.sleep(REPLAY_SECONDS / 4)
        pid = process.pid()
        assert pid is not None and replay.poll() is None
        os.kill(pid, signal.SIGKILL)  # the broker is gone mid-replay
        time.sleep(OUTAGE_SECONDS)
        assert replay.poll() is None, (tmp_path / "replay.log").read_text()
        process.start()
        wait_for(kafka.ready, 90, "the private Kafka, started again")
        code = replay.wait(timeout=180)
        output = (tmp_path / "replay.log").read_text()
        assert code == 0, output
        print(output.splitlines()[-1])
        total = simulation.transactions.height + simulation.labels.height
        assert f"sent {total:,} events" in output and "failed 0" in output
        txns = _all_keys(
            kafka.address, settings.topics.name("transactions"), simulation.transactions.height
        )
        labels = _all_keys(kafka.address, settings.topics.name("labels"), simulation.labels.height)
        assert set(txns) == set(simulation.transactions["txn_id"].to_list())
        assert set(labels) == set(simulation.labels["txn_id"].to_list())
    finally:
        process.stop(timeout=10)
