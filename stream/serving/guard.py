"""Admission to the scoring API, as plain ASGI middleware around the whole app.

* **Load shedding**: at most ``max_in_flight`` requests are handled at once;
  one more is answered ``503`` with ``Retry-After`` at once, so overload never
  turns into timeouts or ``500``. Probes (``/healthz``, ``/readyz``,
  ``/metrics``) are always let in.
* **Shedding past the CPU**: requests are short, so past the process's CPU
  the in-flight count stays low while requests queue in front of the event
  loop, unseen, and a 503 waits as long as a 200. So once the loop has run
  more than ``max_lag_seconds`` behind (:class:`~stream.serving.loop_lag.LoopLag`)
  with a request in flight and has not caught up for :data:`LATE_FOR_SECONDS`
  (every probe in that time late, as CoDel judges a queue), the guard
  *sheds*: it lets in at most ``shed_in_flight`` requests at once, a handful,
  and none while the loop still runs that far behind (long requests: batches),
  and answers the rest 503 at once. Each turn of the loop then starts at
  most that many requests, so the turns stay short: the refusals are
  answered within a turn or two, the accepted requests keep their latency,
  and the process still runs at its CPU. Shedding ends after a second
  (:data:`SHEDDING_SECONDS`) in which it refused fewer than
  :data:`SHEDDING_ENDS_BELOW` of the requests, or fewer than
  :data:`SHEDDING_ENDS_FEWER_THAN`: the load fits again. A stall
  the loop catches up from sooner (a collection, a model swap, the machine
  busy elsewhere) refuses nothing: the requests it held up are let in, as
  they would have been.
* **Body size**: a body over ``max_body_bytes`` is answered 413, from its
  ``Content-Length`` before reading, or as soon as a streamed body passes it.
* **Every answer counted**: ``fraudstream_api_requests_total`` by route and
  status, errors included; an exception no handler took (a bug) is answered
  ``500`` with a JSON body here, instead of the connection being reset.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from starlette.types import Message, Scope

from monitoring.metrics import ApiMetrics
from stream.serving.loop_lag import LoopLag

log = logging.getLogger(__name__)

PROBES = frozenset({"/healthz", "/readyz", "/metrics"})
#: How long the event loop must have run late, without one probe on time, before the
#: guard sheds (a stall it catches up from sooner is not overload).
LATE_FOR_SECONDS = 0.1
#: Shedding is judged by the second: it ends after one in which it refused ...
SHEDDING_SECONDS = 1.0
#: ... fewer than this share of the requests (a handful in flight holds the load again),
#: or fewer than this many (a few long requests a second: batches).
SHEDDING_ENDS_BELOW = 0.01
SHEDDING_ENDS_FEWER_THAN = 3


class BodyTooLarge(Exception):
    """The request body passed the configured limit while it was read."""


async def answer(
    send: Any, status: int, body: dict[str, Any], headers: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    """Send a whole JSON response.

    Parameters
    ----------
    send
        The ASGI ``send`` callable of the request.
    status
        The HTTP status code.
    body
        The JSON body, e.g. ``{"detail": ..., "reason": ...}``.
    headers
        More headers, as ASGI (name, value) byte pairs (e.g. ``Retry-After``).
    """
    payload = json.dumps(body, separators=(",", ":")).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


class Guard:
    """Sheds load over ``max_in_flight``, refuses bodies over ``max_body_bytes`` and
    counts every response (see the module docstring).

    Parameters
    ----------
    app
        The ASGI app guarded.
    metrics
        The API's metrics: requests by route and status, latency, requests shed.
    max_in_flight
        The most requests handled at once (probes aside); one more is answered 503.
    max_body_bytes
        The largest request body accepted; a larger one is answered 413.
    retry_after_seconds
        What a 503's ``Retry-After`` tells the client to wait (seconds).
    max_lag_seconds
        Start shedding once the event loop has run more than this behind with a request in
        flight for :data:`LATE_FOR_SECONDS` (seconds; 0: never).
    shed_in_flight
        The most requests handled at once while shedding.
    """

    def __init__(
        self,
        app: Any,
        metrics: ApiMetrics,
        max_in_flight: int,
        max_body_bytes: int,
        retry_after_seconds: int,
        max_lag_seconds: float = 0.0,
        shed_in_flight: int = 8,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_in_flight = max_in_flight
        #: Refuse while the event loop is more than this behind (0: never for that).
        self.max_lag = max_lag_seconds
        self.lag = LoopLag(late=max_lag_seconds)
        self.max_body_bytes = max_body_bytes
        self.retry_after = ((b"retry-after", str(retry_after_seconds).encode()),)
        #: Requests being handled now (one event loop: no lock needed).
        self.in_flight = 0
        #: The metrics' children by (route, status), as :meth:`_counted` finds them.
        self._children: dict[tuple[str, int], tuple[Any, Any]] = {}
        self.shed_in_flight = shed_in_flight
        #: Shedding since this second began (monotonic; None: not shedding) ...
        self.shedding_second: float | None = None
        #: ... with these requests come in it, and these refused.
        self._seen = self._refused = 0

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0
        #: Set when the body passed the limit while the app read it: FastAPI turns that
        #: into its own 400 ("error parsing the body"), answered as the 413 it is instead.
        too_large: list[bool] = []

        async def counted(message: Message) -> None:
            nonlocal status
            if too_large and message["type"].startswith("http.response"):
                if status or message["type"] != "http.response.start":
                    return  # the app's own answer to the broken read: dropped
                status = 413
                await answer(send, 413, self._too_large())
                return
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._admit(scope, self._limited(receive, too_large), counted)
        except BodyTooLarge:
            if not status:
                await answer(counted, 413, self._too_large())
        except Exception:  # a bug: answered and counted, the connection kept
            log.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            if not status:
                await answer(counted, 500, {"detail": "internal error", "reason": "bug"})
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            latency, requests = self._counted(route, status or 500)
            latency.observe(time.perf_counter() - started)
            requests.inc()

    def _counted(self, route: str, status: int) -> tuple[Any, Any]:
        """The latency histogram and request counter of ``route`` and ``status`` (looked
        up once each: ``labels()`` took 3 % of a request)."""
        key = (route, status)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = (
                self.metrics.latency.labels(route=route),
                self.metrics.requests.labels(route=route, status=str(status)),
            )
        return found

    async def _admit(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["path"] not in PROBES:
            refused = self._overloaded()
            if refused:
                self.metrics.shed.inc()
                await answer(
                    send,
                    503,
                    {"detail": f"overloaded: {refused}; try again", "reason": "overloaded"},
                    self.retry_after,
                )
                return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
            await answer(send, 413, self._too_large())
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1

    def _overloaded(self) -> str:
        """Why a request must be refused now ("": it may come in)."""
        second = self.shedding_second
        if second is None and self.max_lag and self.in_flight:  # (alone: never shed)
            # judged before the in-flight limit: a loop past its CPU can hold that many
            # requests for long, each waiting many slow turns
            behind = self.lag.behind()
            if behind > self.max_lag and self.lag.late_for() >= LATE_FOR_SECONDS:
                self._shedding(time.monotonic())
                self._seen = self._refused = 1
                return self._late(behind)
        if second is not None and (refused := self._shed(second)) is not None:
            return refused
        if self.in_flight >= self.max_in_flight:
            return f"{self.max_in_flight} requests in flight (api.max_in_flight)"
        return ""

    def _shed(self, second: float) -> str | None:
        """Shedding since ``second``: refuse what comes past ``shed_in_flight``, or while
        the loop still runs behind; stop after a second that refused almost nothing (None:
        stopped now)."""
        now = time.monotonic()
        if now - second >= SHEDDING_SECONDS:
            if self._refused < max(SHEDDING_ENDS_BELOW * self._seen, SHEDDING_ENDS_FEWER_THAN):
                self._shedding(None)
                return None
            self._shedding(now)
            self._seen = self._refused = 0
        self._seen += 1
        if self.in_flight >= min(self.shed_in_flight, self.max_in_flight):
            self._refused += 1
            return (
                f"the process is past its CPU: {self.shed_in_flight} requests in flight "
                "(api.shed_in_flight)"
            )
        behind = self.lag.behind() if self.in_flight else 0.0
        if behind > self.max_lag:  # fewer, but long requests (batches) that hold the loop
            self._refused += 1
            return self._late(behind)
        return ""

    def _late(self, behind: float) -> str:
        return (
            f"the event loop is {1000 * behind:.0f} ms behind "
            f"(api.max_loop_lag_ms: {1000 * self.max_lag:g})"
        )

    def _shedding(self, second: float | None) -> None:
        if (second is None) != (self.shedding_second is None):
            self.metrics.shedding.set(0 if second is None else 1)
        self.shedding_second = second

    def _limited(self, receive: Any, too_large: list[bool]) -> Any:
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message: Message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body_bytes:
                    too_large.append(True)
                    raise BodyTooLarge
            return message

        return limited

    def _too_large(self) -> dict[str, Any]:
        return {
            "detail": f"body: larger than {self.max_body_bytes} bytes (api.max_body_bytes)",
            "reason": "too_large",
        }
