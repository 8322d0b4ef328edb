"""The API's uvicorn protocol (stream.serving.protocol) on a real uvicorn server over real
sockets, with a plain ASGI app behind the guard: a request refused as its headers are read
never reaches the app, is answered 503 as the guard answers, is counted, and leaves its
connection usable; probes always get in."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
from prometheus_client import CollectorRegistry

from monitoring.metrics import ApiMetrics
from stream.services.process import free_port
from stream.serving.admission import ADMISSION, Admission
from stream.serving.guard import Guard
from stream.serving.protocol import AdmittingHttp


class Served:
    """The requests uvicorn started (handed to the guard), those the app behind the guard
    saw, and the gate its ``/slow`` requests wait at."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.paths: list[str] = []
        self.release = asyncio.Event()
        self.server: uvicorn.Server | None = None


@pytest.fixture
async def server() -> AsyncIterator[tuple[int, Admission, CollectorRegistry, Served]]:
    """uvicorn with :class:`AdmittingHttp` on a free port, serving a guarded app whose
    lifespan hands the server an admission of one request in flight."""
    registry = CollectorRegistry()
    admission = Admission(ApiMetrics.create(registry), max_in_flight=1, retry_after_seconds=3)
    served = Served()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                scope["state"][ADMISSION] = admission
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        served.paths.append(scope["path"])
        while (await receive()).get("more_body"):
            pass
        if scope["path"] == "/slow":
            await served.release.wait()
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
        )
        await send({"type": "http.response.body", "body": b"ok"})

    guard = Guard(app, admission, max_body_bytes=1024)

    async def started(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            served.started.append(scope["path"])
        await guard(scope, receive, send)

    port = free_port()
    config = uvicorn.Config(
        started,
        host="127.0.0.1",
        port=port,
        http=AdmittingHttp,
        lifespan="on",
        log_level="warning",
        timeout_graceful_shutdown=5,  # (a failed test may leave a connection open)
    )
    uv = uvicorn.Server(config)
    # bound as uvicorn binds it for --workers (its protocol 0: asyncio does not set
    # TCP_NODELAY on its connections)
    serving = asyncio.create_task(uv.serve(sockets=[config.bind_socket()]))
    while not uv.started:
        await asyncio.sleep(0.01)
    served.server = uv
    try:
        yield port, admission, registry, served
    finally:
        served.release.set()
        uv.should_exit = True
        await serving


async def _exchange(
    streams: tuple[asyncio.StreamReader, asyncio.StreamWriter], request: bytes
) -> tuple[int, dict[str, str], bytes]:
    """Send ``request`` on an open connection and read one whole answer: status, headers
    (lower-case names), body."""
    reader, writer = streams
    writer.write(request)
    await writer.drain()
    head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).decode()
    lines = head.split("\r\n")
    headers = dict(
        (name.lower(), value) for name, value in (line.split(": ", 1) for line in lines[1:] if line)
    )
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(lines[0].split()[1]), headers, body


def _post(path: str, body: bytes, *extra: str) -> bytes:
    head = [f"POST {path} HTTP/1.1", "host: api", f"content-length: {len(body)}", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def _hold_the_one_in_flight(
    port: int, served: Served, behind: bytes = b""
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection whose ``GET /slow`` the app holds: the one request allowed in flight
    (with ``behind`` pipelined after it on the same connection)."""
    held = await asyncio.open_connection("127.0.0.1", port)
    held[1].write(b"GET /slow HTTP/1.1\r\nhost: api\r\n\r\n" + behind)
    while served.paths != ["/slow"]:
        await asyncio.sleep(0.01)
    return held


async def test_a_refused_request_never_reaches_the_app_and_its_connection_goes_on(
    server: tuple[int, Admission, CollectorRegistry, Served],
) -> None:
    port, admission, registry, served = server
    held = await _hold_the_one_in_flight(port, served)
    other = await asyncio.open_connection("127.0.0.1", port)
    status, headers, body = await _exchange(other, _post("/v1/score", b'{"a": 1}' * 20))
    probe = await _exchange(other, b"GET /healthz HTTP/1.1\r\nhost: api\r\n\r\n")
    served.release.set()
    held_answer = await _exchange(held, b"")
    after = await _exchange(other, _post("/v1/score", b"{}"))  # the same connection
    for _, writer in (held, other):
        writer.close()

    assert status == 503 and headers["retry-after"] == "3"
    assert headers["content-type"] == "application/json" and "connection" not in headers
    assert json.loads(body) == {
        "detail": "overloaded: 1 requests in flight (api.max_in_flight); try again",
        "reason": "overloaded",
    }
    assert [probe[0], held_answer[0], after[0]] == [200, 200, 200]
    # refused before a task was made for it: neither the guard nor the app saw it
    assert served.started == served.paths == ["/slow", "/healthz", "/v1/score"]
    assert admission.in_flight == 0
    assert registry.get_sample_value("fraudstream_api_shed_total") == 1
    assert (
        registry.get_sample_value(
            "fraudstream_api_requests_total", {"route": "unmatched", "status": "503"}
        )
        == 1
        and registry.get_sample_value(
            "fraudstream_api_requests_total", {"route": "unmatched", "status": "200"}
        )
        == 3
    )


async def test_a_refusal_to_a_closing_connection_closes_it(
    server: tuple[int, Admission, CollectorRegistry, Served],
) -> None:
    port, _, _, served = server
    held = await _hold_the_one_in_flight(port, served)
    closing = await asyncio.open_connection("127.0.0.1", port)
    status, headers, _ = await _exchange(closing, _post("/v1/score", b"{}", "connection: close"))
    closed = await asyncio.wait_for(closing[0].read(), 5)
    served.release.set()
    for _, writer in (held, closing):
        writer.close()
    assert (status, headers["connection"], closed) == (503, "close", b"")


async def test_nagles_delay_is_off_on_a_connection_to_a_bound_socket(
    server: tuple[int, Admission, CollectorRegistry, Served],
) -> None:
    """On a socket bound as for ``--workers``, asyncio leaves Nagle's algorithm on, and a
    response written as headers then body waits for the client's delayed ACK (40 ms)."""
    port, _, _, served = server
    client = await asyncio.open_connection("127.0.0.1", port)
    status, _, _ = await _exchange(client, b"GET /healthz HTTP/1.1\r\nhost: api\r\n\r\n")
    assert served.server is not None
    nodelay = [
        protocol.transport.get_extra_info("socket").getsockopt(
            socket.IPPROTO_TCP, socket.TCP_NODELAY
        )
        for protocol in served.server.server_state.connections
    ]
    client[1].close()
    assert status == 200 and nodelay == [1]


async def test_thousands_of_pipelined_requests_refused_one_after_another(
    server: tuple[int, Admission, CollectorRegistry, Served],
) -> None:
    """A client pipelines 3,000 requests behind one the app holds: each is refused in turn
    once it comes up (the one in flight still counted), without the refusals nesting
    into each other until the interpreter's recursion limit."""
    port, admission, _, served = server
    request = b"GET /v1/score HTTP/1.1\r\nhost: api\r\n\r\n"
    reader, writer = await _hold_the_one_in_flight(port, served, behind=request * 3000)
    served.release.set()
    statuses = [(await _exchange((reader, writer), b""))[0] for _ in range(3001)]
    writer.close()
    assert statuses[0] == 200 and set(statuses[1:]) == {200, 503}
    assert served.paths.count("/v1/score") == statuses.count(200) - 1
    assert admission.in_flight == 0


async def test_a_request_that_cannot_be_parsed_is_answered_400_and_counted(
    server: tuple[int, Admission, CollectorRegistry, Served],
) -> None:
    """A request smuggling a body behind two lengths never reaches the app, yet its 400 is
    counted with every other answer."""
    port, _, registry, served = server
    client = await asyncio.open_connection("127.0.0.1", port)
    smuggled = (
        b"POST /v1/score HTTP/1.1\r\nhost: api\r\ncontent-length: 4\r\n"
        b"transfer-encoding: chunked\r\n\r\n0\r\n\r\n"
    )
    status, _, _ = await _exchange(client, smuggled)
    client[1].close()
    assert status == 400 and served.paths == []
    assert (
        registry.get_sample_value(
            "fraudstream_api_requests_total", {"route": "unmatched", "status": "400"}
        )
        == 1
    )
