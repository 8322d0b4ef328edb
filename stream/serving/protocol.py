"""uvicorn's HTTP protocol with the API's admission in it (:class:`AdmittingHttp`): a
request the process cannot take is refused as soon as its headers are read, in the same
turn of the event loop, before a task is made for it.

Through the app, a refusal waited for the next turn of the loop, and cost a task, the
middleware's call and two ASGI messages. At 3,000 requests/s on one process, past its
CPU, that was 1.31-1.49 ms at the median for a 503; refused here, 0.46-0.51 ms (the A/B is
in docs/performance.md). The app finds the same :class:`~stream.serving.admission.Admission`
in its lifespan state, under :data:`ADMISSION`: without one (another server, a test's
client) nothing is decided here, and :class:`~stream.serving.guard.Guard` decides.
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from stream.serving.admission import ADMISSION, ADMITTED, PROBES, Admission


class AdmittingHttp(HttpToolsProtocol):
    """uvicorn's ``httptools`` protocol, asking the app's admission before it starts a
    request: a refused one is answered 503 with ``Retry-After`` at once and never reaches
    the app; one let in is counted in flight from now, and marked (:data:`ADMITTED`) so
    the app's guard does not ask again. Pass it as uvicorn's ``http``.

    It also turns Nagle's algorithm off on every TCP connection, as uvloop does and
    asyncio's loop does only for sockets it made: the listening socket uvicorn binds for
    ``--workers`` says protocol 0, so its connections kept Nagle's delay, and a response
    written in two parts (headers, body) waited for the client's delayed ACK: 2 processes
    at 1,000 requests/s answered in 43 ms at the median instead of 1.
    """

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send_400_response(self, msg: str) -> None:
        """Answer a request uvicorn cannot parse (a bad request line, a negative or a doubled
        length) 400, as uvicorn does, and count it: no app sees it, so only here can it be
        counted (answered in the turn it was read in: its latency is noted as 0)."""
        admission: Admission | None = self.app_state.get(ADMISSION)
        if admission is not None:
            admission.count("unmatched", 400, 0.0)
        super().send_400_response(msg)

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        admission: Admission | None = self.app_state.get(ADMISSION)
        scope = cycle.scope
        if admission is not None and scope["path"] not in PROBES:
            started = time.perf_counter()
            refusal = admission.refusal()
            if refusal:
                self._refuse(cycle, admission, refusal)
                admission.count("unmatched", 503, time.perf_counter() - started)
                return
            admission.enter()
            scope[ADMITTED] = started
        super()._start_asgi_task(cycle, app)

    def _refuse(self, cycle: Any, admission: Admission, refusal: str) -> None:
        """Answer ``cycle``'s request 503, as the guard would, and go on with the next one
        on the connection (the rest of this one's body is skipped by the parser)."""
        body = admission.refused_body(refusal)
        head = [STATUS_LINE[503]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [
            b"content-type: application/json\r\ncontent-length: ",
            str(len(body)).encode(),
            b"\r\nretry-after: ",
            admission.retry_after,
            b"\r\n",
        ]
        if not cycle.keep_alive:
            head.append(b"connection: close\r\n")
        head.append(b"\r\n")
        if cycle.scope["method"] != "HEAD":
            head.append(body)
        self.transport.write(b"".join(head))
        cycle.response_started = cycle.response_complete = True
        if not cycle.keep_alive:
            self.transport.close()
        # the next pipelined request starts in a later turn: started from here, each refusal
        # would start the next, and 3,000 pipelined behind a request in flight nested past
        # the interpreter's recursion limit, leaving the connection unanswered
        self.loop.call_soon(cycle.on_response)
