"""Scale-out on the real Kafka and Redis: 3 scorers, 2 learners (one active, fenced) and a
monitor, with kill -9 of learners and scorers mid-stream and a paused (stale) learner.

Whatever dies, the result is the single, ordered replay's: every transaction
scored, each card's vector equal to the offline replay's, the final feature
state equal to it, and every label learned by the champion exactly once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from features.keys import models_tag
from producers.generator import Simulation
from producers.scenario import load_scenario, moved, run_scenario
from stream.runtime.topics import ensure_topics
from stream.services.process import free_port
from stream.settings import DriftSettings, Settings
from stream.wiring import sync_client
from tests.support import (
    Processes,
    RealServers,
    assert_every_label_learned_once,
    assert_scored_like_the_offline_replay,
    assert_state_like_the_offline_replay,
    drift_events,
    isolated_settings,
    labels_learned,
    num,
    on_cluster,
    read_metric,
    replay_into,
    replay_paced,
    wait_for,
)

pytestmark = pytest.mark.integration

#: The paced replay lasts about this long (seconds), so the kills land mid-stream.
REPLAY_SECONDS = 30.0


@dataclass
class Cluster:
    """The role processes of one test, each started with its own metrics port."""

    settings: Settings
    processes: Processes
    ports: dict[str, int]

    def start(self, name: str, *roles: str) -> subprocess.Popen[bytes]:
        port = self.ports.setdefault(name, free_port())
        settings = self.settings.model_copy(
            update={"worker": self.settings.worker.model_copy(update={"metrics_port": port})}
        )
        args = [arg for role in roles for arg in ("--role", role)]
        return self.processes.start("worker", settings, *args, name=name)

    def lease_pid(self, role: str) -> int | None:
        """The pid of the process holding ``role``'s lease ("token host:pid")."""
        raw = sync_client(self.settings).get(
            f"{models_tag(self.settings.redis.key_prefix)}:lease:{role}"
        )
        if raw is None:
            return None
        assert isinstance(raw, bytes)  # a client without decode_responses: bytes
        return int(raw.decode().rsplit(":", 1)[1])

    def name_of(self, pid: int) -> str:
        return next(n for n, child in self.processes.children.items() if child.pid == pid)

    def kill(self, name: str) -> None:
        """kill -9, then start it again (as a supervisor would), as a standby or scorer."""
        child = self.processes.children[name]
        child.kill()
        child.wait(timeout=30)
        roles = {"scorer": "score", "learner": "learn", "monitor": "monitor"}
        self.start(name, roles[name.split("-")[0]])

    def metric(self, name: str, metric: str, **labels: str) -> float | None:
        return read_metric(self.ports[name], metric, **labels)


def _settings(real_servers: RealServers) -> Settings:
    base = isolated_settings(real_servers, snapshot_every_labels=200, snapshot_every_seconds=0.5)
    return base.model_copy(update={"kafka": base.kafka.model_copy(update={"partitions": 4})})


#: One hostile record per input topic: it must be dead-lettered, naming the field.
HOSTILE = {
    "transactions": b'{"schema_version": 1, "txn_id": "h1", "card_id": "c1", '
    b'"terminal_id": "p1", "amount": -5, "event_time": "yesterday"}',
    "labels": b"\xff not json",
}


def _send_hostile(settings: Settings) -> None:
    ensure_topics(settings)
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers)
    for topic, value in HOSTILE.items():
        producer.send(settings.topics.name(topic), key=b"hostile", value=value)
    producer.flush()
    producer.close()


@dataclass
class Outcome:
    simulation: Simulation
    cluster: Cluster
    logs: dict[str, str]


@pytest.fixture(scope="module", params=["redis", "redis-cluster"])
def killed(
    real_servers: RealServers,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[Outcome]:
    """A paced baseline replay through 3 scorers, 2 learners and a monitor; the active
    learner is killed twice and a scorer twice, each started again. Once on a single Redis,
    once on a 3-master Redis Cluster."""
    settings = _settings(real_servers)
    if request.param == "redis-cluster":
        settings = on_cluster(settings, request.getfixturevalue("redis_cluster_url"))
    simulation, _ = run_scenario(load_scenario("baseline"), days=20, customers=150)
    labels = simulation.labels.height
    cluster = Cluster(settings, Processes(tmp_path_factory.mktemp("roles")), {})
    try:
        for name in ("learner-1", "learner-2"):
            cluster.start(name, "learn")
        cluster.start("monitor-1", "monitor")
        for name in ("scorer-1", "scorer-2", "scorer-3"):
            cluster.start(name, "score")
        wait_for(lambda: cluster.lease_pid("learn"), 60, "a learner to take the lease")
        _send_hostile(settings)
        replay = replay_paced(settings, simulation, REPLAY_SECONDS)
        for share, victim in [
            (0.15, "learn"),
            (0.3, "scorer-1"),
            (0.45, "learn"),
            (0.6, "scorer-2"),
        ]:
            wait_for(
                lambda s=share: labels_learned(settings) >= s * labels,  # type: ignore[misc]
                180,
                f"{share:.0%} of the labels learned",
            )
            if victim != "learn":
                cluster.kill(victim)
                continue
            pid = cluster.lease_pid("learn")
            assert pid is not None
            killed_at = time.monotonic()
            cluster.kill(cluster.name_of(pid))
            wait_for(
                lambda old=pid: (cluster.lease_pid("learn") or old) != old,  # type: ignore[misc]
                60,
                "a standby to take the lease",
            )
            print(
                f"learner takeover: the lease changed hands "
                f"{time.monotonic() - killed_at:.1f}s after the kill -9"
            )
        replay.join(120)
        wait_for(lambda: labels_learned(settings) >= labels, 240, "every label learned")
        time.sleep(2 * settings.model.snapshot_every_seconds)  # a repeat would show by now
        yield Outcome(
            simulation,
            cluster,
            {name: cluster.processes.log(name) for name in cluster.processes.children},
        )
    finally:
        cluster.processes.stop_all()


def test_every_transaction_is_scored_and_card_vectors_equal_the_offline_replay(
    killed: Outcome,
) -> None:
    assert_scored_like_the_offline_replay(killed.cluster.settings, killed.simulation)


def test_the_final_card_and_terminal_state_equal_the_offline_replay(killed: Outcome) -> None:
    assert_state_like_the_offline_replay(killed.cluster.settings, killed.simulation)


def test_the_champion_learned_every_label_exactly_once(killed: Outcome) -> None:
    assert_every_label_learned_once(killed.cluster.settings, killed.simulation)


def test_the_standby_took_over_twice_and_no_process_crashed(killed: Outcome) -> None:
    learners = "".join(text for name, text in killed.logs.items() if name.startswith("learner"))
    assert learners.count("took over from the previous holder") >= 2
    for name, text in killed.logs.items():
        assert "Crashed" not in text and not _our_tracebacks(text), name
    for name, child in killed.cluster.processes.children.items():
        assert child.poll() is None, f"{name} exited with {child.returncode}"
    active = killed.cluster.lease_pid("learn")
    assert active is not None
    name = killed.cluster.name_of(active)
    assert killed.cluster.metric(name, "fraudstream_lease_active", role="learn") == 1.0


def test_hostile_records_are_dead_lettered_with_their_field_and_crash_nothing(
    killed: Outcome,
) -> None:
    settings = killed.cluster.settings
    consumer = KafkaConsumer(
        settings.topics.name("dead_letters"),
        bootstrap_servers=settings.kafka.bootstrap_servers,
        auto_offset_reset="earliest",
        group_id=None,
        consumer_timeout_ms=5_000,
    )
    letters = [json.loads(m.value) for m in consumer]
    consumer.close()
    hostile = {letter["source_topic"]: letter for letter in letters if letter["key"] == "hostile"}
    assert set(hostile) == {settings.topics.name("transactions"), settings.topics.name("labels")}
    txn = hostile[settings.topics.name("transactions")]
    assert txn["reason"] == "invalid_record"
    assert "amount" in txn["detail"] and "event_time" in txn["detail"]
    assert hostile[settings.topics.name("labels")]["reason"] == "invalid_record"


def _our_tracebacks(log: str) -> list[str]:
    """The tracebacks in ``log`` but those kafka-python logs itself for a connection it
    retries (its lag and progress clients while a group's coordinator starts)."""
    lines = log.splitlines()
    return [
        lines[i - 1]
        for i, line in enumerate(lines)
        if line.startswith("Traceback") and not (i and " ERROR kafka." in lines[i - 1])
    ]


def test_the_monitor_saw_every_scored_transaction_and_every_label_once(killed: Outcome) -> None:
    cluster = killed.cluster

    def learned_once() -> float:
        seen = cluster.metric("monitor-1", "fraudstream_events_in_total", topic="learned")
        again = cluster.metric("monitor-1", "fraudstream_duplicates_total", topic="learned")
        return (seen or 0) - (again or 0)

    # the monitor reads the learned records on its own time: give it that
    wait_for(
        lambda: learned_once() >= killed.simulation.labels.height,
        60,
        "the monitor to read every learned record",
    )
    scored = cluster.metric("monitor-1", "fraudstream_events_in_total", topic="scored")
    resent = cluster.metric("monitor-1", "fraudstream_duplicates_total", topic="scored") or 0
    learned_in = cluster.metric("monitor-1", "fraudstream_events_in_total", topic="learned")
    learned_again = (
        cluster.metric("monitor-1", "fraudstream_duplicates_total", topic="learned") or 0
    )
    transactions = killed.simulation.transactions.height
    assert scored is not None and learned_in is not None
    assert transactions - 5 <= scored - resent <= transactions  # too-late ones: not scored
    # each label reached the monitor once, also those a killed learner had learned and not
    # sent (its successor finds them learned already and sends them again)
    assert learned_in - learned_again == killed.simulation.labels.height


def test_a_paused_learner_is_fenced_when_it_wakes_and_steps_down(
    real_servers: RealServers, tmp_path: Path
) -> None:
    """SIGSTOP the active learner past its lease; the standby takes over; SIGCONT: its
    writes are refused by the fencing token, it steps down, and nothing is lost."""
    settings = _settings(real_servers)
    simulation, _ = run_scenario(load_scenario("baseline"), days=14, customers=100)
    labels = simulation.labels.height
    cluster = Cluster(settings, Processes(tmp_path), {})
    try:
        for name in ("learner-1", "learner-2"):
            cluster.start(name, "learn")
        cluster.start("scorer-1", "score")
        wait_for(lambda: cluster.lease_pid("learn"), 60, "a learner to take the lease")
        replay = replay_paced(settings, simulation, REPLAY_SECONDS)
        wait_for(lambda: labels_learned(settings) >= 0.25 * labels, 180, "a quarter learned")
        pid = cluster.lease_pid("learn")
        assert pid is not None
        paused = cluster.name_of(pid)
        os.kill(pid, signal.SIGSTOP)
        wait_for(lambda: (cluster.lease_pid("learn") or pid) != pid, 60, "the standby to take over")
        os.kill(pid, signal.SIGCONT)
        replay.join(120)
        wait_for(lambda: labels_learned(settings) >= labels, 240, "every label learned")
        time.sleep(2 * settings.model.snapshot_every_seconds)
        assert labels_learned(settings) == labels
        wait_for(
            lambda: "stepping down" in cluster.processes.log(paused),
            30,
            "the paused learner to step down",
        )
        assert cluster.processes.children[paused].poll() is None  # stood by, did not crash
        assert "took over from the previous holder" in "".join(
            cluster.processes.log(n) for n in ("learner-1", "learner-2")
        )
    finally:
        for child in cluster.processes.started:
            if child.poll() is None:
                os.kill(child.pid, signal.SIGCONT)
        cluster.processes.stop_all()


def _scores(settings: Settings) -> int:
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_servers)
    try:
        topic = settings.topics.name("scores")
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return sum(consumer.end_offsets(parts).values())
    finally:
        consumer.close()


def test_the_monitor_of_split_roles_alarms_as_early_as_one_worker_and_once(
    real_servers: RealServers, tmp_path: Path
) -> None:
    """The same sudden shift, replayed into one ``all`` worker and into 2 scorers, a
    learner and a monitor: the monitor's first PSI alarm on the shifted feature comes within
    the single worker's delay + 10 % or one PSI check (the order records from different
    partitions reach the detectors in is not fixed, so either layout's alarm can fall one
    check earlier or later: 34.8, 37.3, 37.4 or 39.2 h in repeated runs of each, where one
    check is 100 transactions, 5.2 h here), and it raises that alarm about as often as the
    worker did, never twice."""
    drift = DriftSettings(
        reference_size=2000,
        window_size=1000,
        check_every=100,
        label_delay_frauds=30,
        features=("txn_amount_log",),
        kswin_features=("txn_amount_log",),
    )
    one, split = (_settings(real_servers).model_copy(update={"drift": drift}) for _ in range(2))
    simulation, manifest = run_scenario(
        moved(load_scenario("sudden_covariate_shift"), 56, 42), customers=200
    )
    simulation = simulation.until_traffic_ends()
    changed = float(manifest["change_points"][0]["event_time"])
    for settings in (one, split):
        summary, _ = replay_into(settings, simulation)
        assert summary.failed == 0
    processes = Processes(tmp_path)
    cluster = Cluster(split, processes, {})
    try:
        processes.start("worker", one, name="single")
        cluster.start("learner-1", "learn")
        cluster.start("monitor-1", "monitor")
        cluster.start("scorer-1", "score")
        cluster.start("scorer-2", "score")
        for settings in (one, split):
            wait_for(
                lambda s=settings: _scores(s) >= simulation.transactions.height - 50,  # type: ignore[misc]
                600,
                "every transaction scored",
            )
        time.sleep(5)  # the monitor's last records
        events = {
            name: [
                e
                for e in drift_events(s)
                if e["detector"] == "psi" and e["subject"] == "txn_amount_log"
            ]
            for name, s in (("single", one), ("split", split))
        }
    finally:
        processes.stop_all()
    assert events["single"], "the single worker raised no PSI alarm"
    assert events["split"], "the split monitor raised no PSI alarm"
    assert all(e["pipeline"] == split.worker.app_id for e in events["split"])
    single_delay = float(events["single"][0]["first_seen"]) - changed
    split_delay = float(events["split"][0]["first_seen"]) - changed
    print(
        f"first PSI alarm {single_delay / 3600:.1f} h after the change with one worker, "
        f"{split_delay / 3600:.1f} h with split roles; alarms {len(events['single'])} and "
        f"{len(events['split'])}"
    )
    times = simulation.transactions["event_time"]
    one_check = drift.check_every * (num(times.max()) - num(times.min())) / len(times)
    assert 0 < split_delay <= max(single_delay * 1.1, single_delay + one_check)
    # the same episodes, none raised twice (a monitor per scorer would double them); the
    # order records reach the detectors in is not fixed, and a statistic can cross its
    # threshold again by a hair in one order and not in another (seen: 0.1006 against 0.1)
    assert len({e["first_seen"] for e in events["split"]}) == len(events["split"])
    assert abs(len(events["split"]) - len(events["single"])) <= 1
