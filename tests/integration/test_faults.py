"""Redis faults on the real servers: a worker and the API, both on their own Redis, while a
paced replay streams through Kafka. Redis is killed (kill -9) and started again, later
paused (SIGSTOP) for 10 s and resumed.

Both processes must keep running; the API answers 503 with a reason (never 500, never a
hang) while Redis is away and 200 again once it is back; and the result equals the single,
ordered offline replay's: nothing lost, nothing counted twice, every label learned once.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from producers.generator import Simulation
from producers.scenario import load_scenario, run_scenario
from stream.services.process import ManagedProcess, free_port
from stream.services.servers import RedisServer
from stream.settings import ServicesSettings, Settings
from tests.support import (
    Processes,
    RealServers,
    assert_every_label_learned_once,
    assert_scored_like_the_offline_replay,
    assert_state_like_the_offline_replay,
    isolated_settings,
    labels_learned,
    read_metric,
    replay_paced,
    wait_for,
)

pytestmark = pytest.mark.integration

REPLAY_SECONDS = 24.0
PAUSE_SECONDS = 10.0


@dataclass
class Answers:
    """What the API answered while Redis was away: status, reason, seconds taken."""

    seen: list[tuple[int, str, float]] = field(default_factory=list)

    def ask(self, client: httpx.Client, body: dict[str, object], seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            started = time.monotonic()
            response = client.post("/v1/score", json=body)
            reason = response.json().get("reason", "") if response.status_code != 200 else ""
            self.seen.append((response.status_code, reason, time.monotonic() - started))
            time.sleep(0.05)


@dataclass
class Outcome:
    settings: Settings
    simulation: Simulation
    killed: Answers
    paused: Answers
    #: Seconds from Redis answering again to the API's first 200.
    recovered_after: float
    alive: dict[str, bool]
    api_port: int
    ready_while_down: int
    logs: dict[str, str]


def _private_redis(folder: Path) -> tuple[RedisServer, ManagedProcess]:
    server = RedisServer(ServicesSettings(redis_port=free_port()), folder)
    process = server.process(server.prepare(ServicesSettings(redis_port=server.port)))
    process.start()
    wait_for(server.ready, 30, "the private Redis")
    return server, process


@pytest.fixture(scope="module")
def faults(
    real_servers: RealServers, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Outcome]:
    folder = tmp_path_factory.mktemp("faults")
    server, redis_process = _private_redis(folder / "redis")
    base = isolated_settings(real_servers, snapshot_every_labels=100)
    settings = base.model_copy(
        update={
            "redis": base.redis.model_copy(
                update={
                    "url": server.url,
                    "socket_timeout_seconds": 1.0,
                    "connect_timeout_seconds": 0.5,
                }
            )
        }
    )
    simulation, _ = run_scenario(load_scenario("baseline"), days=14, customers=120)
    processes = Processes(folder)
    try:
        worker = processes.start("worker", settings)
        api = processes.start("api", settings)
        client = httpx.Client(base_url=f"http://127.0.0.1:{settings.api.port}", timeout=15)
        wait_for(lambda: _ok(client, "/readyz"), 90, "the API ready (a champion published)")
        first = simulation.transactions.row(0, named=True)
        body = {
            "schema_version": 1,
            "txn_id": "probe",
            "card_id": first["card_id"],
            "terminal_id": first["terminal_id"],
            "amount": 12.5,
            "event_time": "2026-01-01T00:00:00Z",
        }
        replay = replay_paced(settings, simulation, REPLAY_SECONDS)
        labels = simulation.labels.height
        wait_for(lambda: labels_learned(settings) >= 0.25 * labels, 180, "a quarter of the labels")

        pid = redis_process.pid()
        assert pid is not None
        os.kill(pid, signal.SIGKILL)  # Redis gone, without a word
        wait_for(lambda: redis_process.pid() is None, 10, "Redis dead")
        killed = Answers()
        killed.ask(client, body, 4.0)
        ready_while_down = client.get("/readyz").status_code
        redis_process.start()
        wait_for(server.ready, 30, "Redis started again")
        back = time.monotonic()
        wait_for(
            lambda: client.post("/v1/score", json=body).status_code == 200,
            30,
            "the API scoring again",
        )
        recovered_after = time.monotonic() - back

        wait_for(lambda: labels_learned(settings) >= 0.6 * labels, 180, "60% of the labels")
        pid = redis_process.pid()
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        paused = Answers()
        try:
            paused.ask(client, body, PAUSE_SECONDS)
        finally:
            os.kill(pid, signal.SIGCONT)

        replay.join(120)
        wait_for(lambda: labels_learned(settings) >= labels, 240, "every label learned")
        time.sleep(1.0)
        alive = {"worker": worker.poll() is None, "api": api.poll() is None}
        yield Outcome(
            settings,
            simulation,
            killed,
            paused,
            recovered_after,
            alive,
            settings.api.port,
            ready_while_down,
            {name: processes.log(name) for name in processes.children},
        )
        client.close()
    finally:
        processes.stop_all()
        redis_process.stop()


def _ok(client: httpx.Client, path: str) -> bool:
    try:
        return client.get(path).status_code == 200
    except httpx.HTTPError:
        return False


def test_worker_and_api_keep_running_through_the_outages(faults: Outcome) -> None:
    assert faults.alive == {"worker": True, "api": True}, faults.logs
    for name, text in faults.logs.items():
        assert "Crashed" not in text and "Traceback" not in text, (name, text[-3000:])


def test_the_api_answers_503_with_its_reason_while_redis_is_away(faults: Outcome) -> None:
    for answers in (faults.killed, faults.paused):
        statuses = {status for status, _, _ in answers.seen}
        assert 503 in statuses and statuses <= {200, 503}, answers.seen
        assert {reason for status, reason, _ in answers.seen if status == 503} == {
            "redis_unavailable"
        }
    # a paused Redis is a timeout (redis.socket_timeout_seconds = 1), not a hang
    slowest = max(seconds for _, _, seconds in faults.paused.seen)
    print(
        f"paused Redis: {len(faults.paused.seen)} requests, slowest {slowest:.2f}s; "
        f"killed Redis: {len(faults.killed.seen)} requests; back to 200 "
        f"{faults.recovered_after:.2f}s after Redis answered"
    )
    assert slowest < 5.0
    assert faults.ready_while_down == 503
    assert faults.recovered_after < 5.0


def test_every_answer_is_counted_and_none_is_a_500(faults: Outcome) -> None:
    port = faults.api_port
    seen = sum(status == 503 for a in (faults.killed, faults.paused) for status, _, _ in a.seen)
    counted = read_metric(port, "fraudstream_api_requests_total", route="/v1/score", status="503")
    assert counted == seen
    assert (
        read_metric(port, "fraudstream_api_requests_total", route="/v1/score", status="500") is None
    )


def test_nothing_is_lost_or_counted_twice(faults: Outcome) -> None:
    assert_scored_like_the_offline_replay(faults.settings, faults.simulation)
    assert_state_like_the_offline_replay(faults.settings, faults.simulation)
    assert_every_label_learned_once(faults.settings, faults.simulation)
