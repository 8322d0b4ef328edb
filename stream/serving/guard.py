"""Admission to the scoring API, as plain ASGI middleware around the whole app.

* **Load shedding**: at most ``max_in_flight`` requests are handled at once;
  one more is answered ``503`` with ``Retry-After`` at once, so accepted
  requests keep their latency and overload never turns into timeouts or
  ``500``. Probes (``/healthz``, ``/readyz``, ``/metrics``) are always let in.
* **Shedding by the event loop's lag** (:class:`LoopLag`): requests are short,
  so past the process's CPU the in-flight count stays low while requests
  queue in front of the event loop, unseen, and a 503 waits as long as a
  200. So a request is also refused while the loop runs more than
  ``max_lag_seconds`` behind, has not caught up for :data:`LATE_FOR_SECONDS`
  (every probe in that time late: as CoDel judges a queue; at once while it
  refused one within :data:`SHEDDING_SECONDS`) and another request is in
  flight: what is accepted then leaves the CPU for the refusals, which stay
  fast. A stall (a collection, a model swap, the
  machine busy elsewhere) the loop catches up from within that time refuses
  nothing: the requests it held up are let in, as they would have been.
* **Body size**: a body over ``max_body_bytes`` is answered ``413``, from its
  ``Content-Length`` before reading, or as soon as a streamed body passes it.
* **Every answer counted**: ``fraudstream_api_requests_total`` by route and
  status, errors included; an exception no handler took (a bug) is answered
  ``500`` with a JSON body here, instead of the connection being reset.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from typing import Any

from starlette.types import Message, Scope

from monitoring.metrics import ApiMetrics

log = logging.getLogger(__name__)

PROBES = frozenset({"/healthz", "/readyz", "/metrics"})
#: How long the event loop must have run late, without one probe on time, before its lag
#: refuses requests (a stall it catches up from sooner is not overload) ...
LATE_FOR_SECONDS = 0.1
#: ... unless it refused one this recently: overload that goes on is refused at once, not
#: let in for that long each time the loop catches up for a moment.
SHEDDING_SECONDS = 1.0


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


class LoopLag:
    """How far behind its schedule the running event loop keeps running.

    A probe sleeps ``interval`` seconds again and again and notes how much
    later than asked it woke. The loop is behind by a moving average of those
    notes (a quarter weight to the newest: one pause, a garbage collection or
    a model swap, fades within a few turns), or by how overdue the probe is
    now, if more (a turn that handles a flood of requests at once keeps the
    probe from running). :meth:`late_for` tells how long the probes have woken
    more than ``late`` late, every one of them: a stall the loop catches up
    from resets it, a loop past its CPU never does. Started by the first
    :meth:`behind` call, from inside the loop.

    Parameters
    ----------
    interval
        Seconds the probe sleeps between two notes.
    late
        Seconds past its due time a probe counts as late (:meth:`late_for`).

    >>> async def main():
    ...     lag = LoopLag(interval=0.001, late=0.005)
    ...     lag.behind()
    ...     await asyncio.sleep(0.01)
    ...     on_time = lag.behind()
    ...     time.sleep(0.03)                # one stall ...
    ...     await asyncio.sleep(0.01)
    ...     after_a_stall = lag.late_for()
    ...     for _ in range(10):             # ... and turns of the loop that take 30 ms each
    ...         time.sleep(0.03)
    ...         await asyncio.sleep(0)
    ...     queued = lag.behind()
    ...     lag.stop()
    ...     return on_time < 0.01, after_a_stall, queued > 0.02, lag.late_for() > 0.1
    >>> asyncio.run(main())
    (True, 0.0, True, True)
    """

    def __init__(self, interval: float = 0.005, late: float = 0.005) -> None:
        self.interval = interval
        #: A probe that wakes more than this late is late (:meth:`late_for`).
        self.late = late
        #: The moving average of how late the probe woke, and when it is due next.
        self.average = 0.0
        self.due = 0.0
        #: When the first of the late probes in a row woke (None: the last was on time).
        self.late_since: float | None = None
        self._task: asyncio.Task[None] | None = None

    def behind(self) -> float:
        """Seconds the loop keeps running behind."""
        if self._task is None:
            self.due = time.monotonic() + self.interval
            self._task = asyncio.get_running_loop().create_task(self._probe())
        return max(self.average, time.monotonic() - self.due)

    async def _probe(self) -> None:
        # A task, not a bare timer callback: it resumes one turn of the loop after its
        # timer fires, so each note takes in a whole turn of the queue. A timer callback
        # notes only its own lateness: at 3,000 req/s on one process 35 and 129
        # requests timed out again (503 p99 3.9 s), against none with the task.
        while True:
            self.due = due = time.monotonic() + self.interval
            await asyncio.sleep(self.interval)
            now = time.monotonic()
            woke = max(0.0, now - due)
            self.average += (woke - self.average) / 4
            if woke <= self.late:
                self.late_since = None
            elif self.late_since is None:
                self.late_since = now

    def late_for(self) -> float:
        """Seconds since the first of the probes in a row that woke late woke (0: the last
        one was on time): how long the loop has not caught up after falling behind, however
        long the stall that began it."""
        return 0.0 if self.late_since is None else time.monotonic() - self.late_since

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None


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
        Refuse a request while another is in flight and the event loop runs more than this
        behind (seconds; 0: never for that).
    """

    def __init__(
        self,
        app: Any,
        metrics: ApiMetrics,
        max_in_flight: int,
        max_body_bytes: int,
        retry_after_seconds: int,
        max_lag_seconds: float = 0.0,
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
        #: When the lag last refused a request (monotonic).
        self._refused_at = -math.inf

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
        if self.in_flight >= self.max_in_flight:
            return f"{self.max_in_flight} requests in flight (api.max_in_flight)"
        if self.max_lag and self.in_flight:  # alone, a request never waits for another
            behind = self.lag.behind()
            if behind > self.max_lag and (
                self.lag.late_for() >= LATE_FOR_SECONDS
                or time.monotonic() - self._refused_at < SHEDDING_SECONDS
            ):
                self._refused_at = time.monotonic()
                return (
                    f"the event loop is {1000 * behind:.0f} ms behind "
                    f"(api.max_loop_lag_ms: {1000 * self.max_lag:g})"
                )
        return ""

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
