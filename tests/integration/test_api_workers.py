"""``fraudstream api`` as a process, on the real Redis and Kafka: ``--workers 2`` answers on
one port, and whichever answers a scrape counts every answer of both; past its in-flight
limit one process refuses with 503 at once, never 500, every answer counted; an idle
connection is kept."""

from __future__ import annotations

import asyncio
import http.client
import re
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from features.events import Transaction
from producers.schema import TransactionRecord
from stream.settings import Settings
from tests.support import (
    Processes,
    RealServers,
    isolated_settings,
    publish_trained_champion,
    wait_api_ready,
)

pytestmark = pytest.mark.integration


def _with_champion(servers: RealServers) -> Settings:
    """A test's own settings, with a trained champion published under its Redis prefix."""
    settings = isolated_settings(servers)
    assert settings.model.signing_key is not None
    publish_trained_champion(
        servers.redis_url,
        settings.redis.key_prefix,
        settings.model.signing_key.get_secret_value().encode(),
    )
    return settings


def _children(pid: int) -> set[int]:
    """The processes ``pid`` started (read from /proc)."""
    found = set()
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        parent = re.search(r"^PPid:\s+(\d+)", text, re.M)
        if parent and int(parent.group(1)) == pid:
            found.add(int(status.parent.name))
    return found


def test_two_worker_processes_serve_one_port_and_count_together(
    real_servers: RealServers,
    tmp_path: Path,
) -> None:
    settings = _with_champion(real_servers)
    processes = Processes(tmp_path)
    url = f"http://127.0.0.1:{settings.api.port}"
    try:
        api = processes.start("api", settings, "--workers", "2")

        wait_api_ready(url)
        workers = _children(api.pid)
        assert len(workers) >= 2, (workers, processes.log("api"))
        bodies = [
            TransactionRecord.from_event(
                Transaction(f"w{i}", f"c{i % 4}", f"p{i % 3}", 9.0 + i, 1e5 + 30_000 + i)
            ).model_dump(mode="json")
            for i in range(60)
        ]
        with httpx.Client(base_url=url, timeout=10) as client:
            answers = [
                client.post("/v1/score", json=b, headers={"connection": "close"}) for b in bodies
            ]
            assert [a.status_code for a in answers] == [200] * 60
            scores = {a.json()["score"] for a in answers}
            assert len(scores) > 1 and all(0 < s < 1 for s in scores)
            sent = 'fraudstream_api_requests_total{route="/v1/score",status="200"} 60.0'
            deadline = time.monotonic() + 30
            seen: list[bool] = []
            while len(seen) < 6 and time.monotonic() < deadline:  # scrapes land on either
                text = client.get("/metrics", headers={"connection": "close"}).text
                seen.append(sent in text)
                if "fraudstream_api_decisions_sent_total 60.0" not in text:
                    seen.pop()  # the decision logs have not sent all yet: read again
                    time.sleep(0.2)
            assert seen == [True] * 6, processes.log("api")
    finally:
        processes.stop_all()


def test_an_idle_connection_outlives_uvicorns_five_seconds(
    real_servers: RealServers,
    tmp_path: Path,
) -> None:
    """A client (or load balancer) that reuses a connection after 6 idle seconds gets its
    answer: uvicorn closes idle connections after 5 s by default, and a request sent as it
    closes gets a reset; ``api.keep_alive_seconds`` (75) keeps them."""
    settings = _with_champion(real_servers)
    processes = Processes(tmp_path)
    url = f"http://127.0.0.1:{settings.api.port}"
    try:
        processes.start("api", settings)
        wait_api_ready(url)
        conn = http.client.HTTPConnection("127.0.0.1", settings.api.port, timeout=10)
        conn.request("GET", "/healthz")
        first = conn.getresponse()
        first.read()
        time.sleep(6)
        conn.request("GET", "/healthz")  # (a connection closed meanwhile: RemoteDisconnected)
        again = conn.getresponse()
        again.read()
        conn.close()
    finally:
        processes.stop_all()
    assert (first.status, again.status) == (200, 200)
    assert again.getheader("connection") != "close"


def test_the_api_process_past_its_in_flight_limit_answers_503_never_500(
    real_servers: RealServers,
    tmp_path: Path,
) -> None:
    """300 scores at once on 60 connections, 2 allowed in flight: the excess is refused 503
    with ``Retry-After`` (by the server's protocol, as its headers are read), the rest
    scored, none 500, and the process's metrics count each answer and each refusal."""
    settings = _with_champion(real_servers)
    settings = settings.model_copy(
        update={"api": settings.api.model_copy(update={"max_in_flight": 2})}
    )
    processes = Processes(tmp_path)
    url = f"http://127.0.0.1:{settings.api.port}"
    bodies = [
        TransactionRecord.from_event(
            Transaction(f"o{i}", f"c{i % 40}", "p", 12.0 + i, 1e5 + 40_000 + i)
        ).model_dump(mode="json")
        for i in range(300)
    ]

    async def flood() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=60)
        async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
            return await asyncio.gather(*(client.post("/v1/score", json=b) for b in bodies))

    try:
        processes.start("api", settings)
        wait_api_ready(url)
        answers = asyncio.run(flood())
        text = httpx.get(f"{url}/metrics", timeout=10).text
    finally:
        processes.stop_all()
    statuses = Counter(a.status_code for a in answers)
    print("the API process past its in-flight limit:", dict(statuses))
    assert set(statuses) == {200, 503}, (statuses, processes.log("api"))
    shed = [a for a in answers if a.status_code == 503]
    assert all(a.headers["retry-after"] == "1" and a.json()["reason"] == "overloaded" for a in shed)
    counted = {
        f'fraudstream_api_requests_total{{route="/v1/score",status="200"}} {statuses[200]}.0',
        f'fraudstream_api_requests_total{{route="unmatched",status="503"}} {statuses[503]}.0',
        f"fraudstream_api_shed_total {statuses[503]}.0",
    }
    assert counted <= set(text.splitlines()), [
        line for line in text.splitlines() if "requests_total" in line or "shed_total" in line
    ]
