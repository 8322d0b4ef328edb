"""The API's admission guard on its own (plain ASGI apps behind it, no Redis): the in-flight
limit, shedding past the CPU and how it ends, a stall that refuses nothing, and a bug
answered as a counted 500."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import httpx
from prometheus_client import CollectorRegistry

from monitoring.metrics import ApiMetrics
from stream.serving.admission import Admission
from stream.serving.guard import Guard


async def _ok(send: Any) -> None:
    """Answer 200 ``ok`` through ``send`` (the apps behind the guard here)."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def test_over_the_in_flight_limit_the_guard_answers_503_at_once() -> None:
    release = asyncio.Event()

    async def slow(scope: Any, receive: Any, send: Any) -> None:
        if scope["path"] != "/healthz":
            await release.wait()
        await _ok(send)

    registry = CollectorRegistry()
    guard = Guard(slow, Admission(ApiMetrics.create(registry), 2, 3), max_body_bytes=1024)
    transport = httpx.ASGITransport(app=guard)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        held = [asyncio.create_task(client.get("/v1/score")) for _ in range(2)]
        await asyncio.sleep(0.05)
        shed = await client.get("/v1/score")
        probe = await asyncio.wait_for(client.get("/healthz"), 5)  # probes always get in
        release.set()
        answered = await asyncio.gather(*held)
    assert shed.status_code == 503 and shed.headers["retry-after"] == "3"
    assert shed.json()["reason"] == "overloaded"
    assert probe.status_code == 200
    assert [r.status_code for r in answered] == [200, 200]
    assert registry.get_sample_value("fraudstream_api_shed_total") == 1
    assert (
        registry.get_sample_value(
            "fraudstream_api_requests_total", {"route": "unmatched", "status": "503"}
        )
        == 1
    )


def _lag_guard(
    app: Any,
    max_lag_seconds: float,
    shed_in_flight: int = 8,
    registry: CollectorRegistry | None = None,
) -> Guard:
    """A guard around ``app`` that sheds past the CPU only (the in-flight limit far away)."""
    metrics = ApiMetrics.create(registry or CollectorRegistry())
    admission = Admission(
        metrics,
        max_in_flight=1000,
        retry_after_seconds=1,
        max_lag_seconds=max_lag_seconds,
        shed_in_flight=shed_in_flight,
    )
    return Guard(app, admission, max_body_bytes=1024)


async def _flood(max_lag_seconds: float) -> tuple[Counter[int], list[str], int, int]:
    """60 requests, one every 2 ms, to an app that waits 5 ms then holds the CPU 20 ms
    (a process past its CPU), then one alone: the statuses, the 503s' details, how many the app
    handled, and the lone request's status."""
    handled = 0

    async def busy(scope: Any, receive: Any, send: Any) -> None:
        nonlocal handled
        handled += 1
        await asyncio.sleep(0.005)  # a round trip to Redis ...
        time.sleep(0.02)  # ... and CPU work: the event loop runs behind
        await _ok(send)

    guard = _lag_guard(busy, max_lag_seconds)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=guard), base_url="http://api"
    ) as client:
        sent = []
        for _ in range(60):
            sent.append(asyncio.create_task(client.get("/v1/score")))
            await asyncio.sleep(0.002)
        answers = await asyncio.gather(*sent)
        alone = await client.get("/v1/score")  # nothing else in flight: let in
    guard.admission.close()
    return (
        Counter(a.status_code for a in answers),
        [a.json()["detail"] for a in answers if a.status_code == 503],
        handled,
        alone.status_code,
    )


async def test_past_its_cpu_the_guard_sheds_by_the_event_loops_lag() -> None:
    """With requests queued behind a busy event loop (the in-flight limit far away), the
    excess is refused with 503 without reaching the app; off, every request waits its
    turn; a request alone is always let in."""
    statuses, details, handled, alone = await _flood(0.005)
    assert set(statuses) == {200, 503} and statuses[503] >= 10, statuses
    assert all("api.max_loop_lag_ms" in d or "api.shed_in_flight" in d for d in details), details
    assert handled == statuses[200] + 1 and alone == 200
    statuses, details, handled, alone = await _flood(0.0)
    assert statuses == Counter({200: 60}) and handled == 61 and alone == 200


async def test_one_stall_of_the_event_loop_refuses_nothing() -> None:
    """A process well within its CPU stalls once for 100 ms (a collection, a model swap):
    the requests it held up are late, then let in; the lag refuses only a loop that stays
    behind (the flood above)."""

    async def quick(scope: Any, receive: Any, send: Any) -> None:
        await asyncio.sleep(0.006)  # a round trip to Redis: two requests in flight at times
        await _ok(send)

    guard = _lag_guard(quick, 0.02)  # (a loaded test machine is often 5 ms late)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=guard), base_url="http://api"
    ) as client:
        sent = []
        for i in range(60):  # 250 requests/s
            sent.append(asyncio.create_task(client.get("/v1/score")))
            if i == 20:  # the stall, with the requests that come meanwhile queued
                sent += [asyncio.create_task(client.get("/v1/score")) for _ in range(15)]
                time.sleep(0.1)
            await asyncio.sleep(0.004)
        answers = await asyncio.gather(*sent)
    guard.admission.close()
    assert Counter(a.status_code for a in answers) == Counter({200: 75})


async def test_a_bug_in_a_handler_is_a_counted_500_not_a_reset() -> None:
    async def broken(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("a bug")

    registry = CollectorRegistry()
    guard = Guard(broken, Admission(ApiMetrics.create(registry), 4, 1), 1024)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=guard), base_url="http://api"
    ) as client:
        response = await client.get("/anything")
    assert response.status_code == 500 and response.json()["reason"] == "bug"
    assert (
        registry.get_sample_value(
            "fraudstream_api_requests_total", {"route": "unmatched", "status": "500"}
        )
        == 1
    )


async def test_shedding_holds_a_handful_in_flight_and_ends_once_the_load_fits() -> None:
    """Past its CPU the guard sheds: what it lets in then never makes more than
    ``shed_in_flight`` in flight (short turns of the loop), the gauge shows it, and once the
    requests come at a pace the process holds, a second that refuses nothing ends it."""
    in_flight_when_let_in: list[int] = []
    busy = True

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if guard.admission.shedding_second is not None:
            in_flight_when_let_in.append(guard.admission.in_flight)
        await asyncio.sleep(0.005)  # a round trip to Redis ...
        if busy:
            time.sleep(0.02)  # ... and CPU work: the event loop runs behind
        await _ok(send)

    registry = CollectorRegistry()
    guard = _lag_guard(app, 0.005, shed_in_flight=3, registry=registry)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=guard), base_url="http://api"
    ) as client:
        flood = []
        for _ in range(80):
            flood.append(asyncio.create_task(client.get("/v1/score")))
            await asyncio.sleep(0.002)
        flooded = Counter(a.status_code for a in await asyncio.gather(*flood))
        shedding_after_flood = registry.get_sample_value("fraudstream_api_shedding")
        busy = False
        paced = []
        for _ in range(60):  # 2.4 s at 25 requests/s, each 5 ms: the load fits
            paced.append(await client.get("/v1/score"))
            await asyncio.sleep(0.035)
    guard.admission.close()
    assert flooded[503] >= 10 and shedding_after_flood == 1, (flooded, shedding_after_flood)
    assert in_flight_when_let_in and max(in_flight_when_let_in) <= 3, in_flight_when_let_in
    assert Counter(a.status_code for a in paced) == Counter({200: 60})
    assert guard.admission.shedding_second is None
    assert registry.get_sample_value("fraudstream_api_shedding") == 0


async def test_a_second_with_only_a_few_refusals_ends_shedding() -> None:
    """A few long requests a second (batches) are refused now and then by the loop's lag:
    a second that refused fewer than 3 ends shedding however few came; 3 of 50 (6 %) do
    not."""

    async def ok(scope: Any, receive: Any, send: Any) -> None:
        await _ok(send)

    registry = CollectorRegistry()
    guard = _lag_guard(ok, 0.005, registry=registry)
    ended = []
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=guard), base_url="http://api"
    ) as client:
        for refused in (3, 2):  # the second just past, as the guard counted it
            guard.admission._shedding(time.monotonic() - 1.01)
            guard.admission._seen, guard.admission._refused = 50, refused
            answer = await client.get("/v1/score")
            ended.append((answer.status_code, guard.admission.shedding_second is None))
    guard.admission.close()
    assert ended == [(200, False), (200, True)]
    assert registry.get_sample_value("fraudstream_api_shedding") == 0


async def test_a_second_without_requests_ends_shedding() -> None:
    """Shedding that refused nearly everything in its last second ends when the next
    request comes after a whole second with none: the load it judged is gone (it carried
    over into the next burst, which began shedding at once)."""

    async def ok(scope: Any, receive: Any, send: Any) -> None:
        await _ok(send)

    guard = _lag_guard(ok, 0.005)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=guard), base_url="http://api"
    ) as client:
        guard.admission._shedding(time.monotonic() - 2.01)
        guard.admission._seen, guard.admission._refused = 50, 50
        answer = await client.get("/v1/score")
    guard.admission.close()
    assert (answer.status_code, guard.admission.shedding_second) == (200, None)
