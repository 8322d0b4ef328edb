"""Which requests the scoring API lets in (:class:`Admission`): the in-flight limit, and
load shedding once the process is past its CPU. Asked by :mod:`stream.serving.protocol`
as soon as a request's headers are read, and by :mod:`stream.serving.guard` for requests
that come another way (a test's client, another HTTP implementation).

* **The in-flight limit**: at most ``max_in_flight`` requests are handled at once; one
  more is refused at once, so overload never turns into timeouts or ``500``. Probes
  (``/healthz``, ``/readyz``, ``/metrics``) are always let in.
* **Shedding past the CPU**: requests are short, so past the process's CPU the in-flight
  count stays low while requests queue in front of the event loop, unseen, and a 503 would
  wait as long as a 200. So once the loop has run more than ``max_lag_seconds`` behind
  (:class:`~stream.serving.loop_lag.LoopLag`) with a request in flight and has not caught
  up for :data:`LATE_FOR_SECONDS` (every probe in that time late, as CoDel judges a
  queue), the process *sheds*: it lets in at most ``shed_in_flight`` requests at once, a
  handful, and none while the loop still runs that far behind (long requests: batches).
  Each turn of the loop then starts at most that many requests, so the turns stay short:
  the refusals are answered within a turn, the accepted requests keep their latency, and
  the process still runs at its CPU. Shedding ends after a second
  (:data:`SHEDDING_SECONDS`) in which it refused fewer than :data:`SHEDDING_ENDS_BELOW`
  of the requests, or fewer than :data:`SHEDDING_ENDS_FEWER_THAN`, or in which none
  came: the load fits again. A stall the loop catches up from sooner (a collection, a
  model swap, the machine busy elsewhere) refuses nothing: the requests it held up are
  let in, as they would have been.
"""

from __future__ import annotations

import json
import time
from typing import Any

from monitoring.metrics import ApiMetrics
from stream.serving.loop_lag import LoopLag

PROBES = frozenset({"/healthz", "/readyz", "/metrics"})
#: The key of the app's :class:`Admission` in its lifespan state (where the server's
#: protocol finds it) ...
ADMISSION = "fraudstream.admission"
#: ... and the scope key that tells the app's guard the server let the request in already
#: (counted in flight: the guard counts it out), with when (``time.perf_counter()``).
ADMITTED = "fraudstream.admitted"
#: How long the event loop must have run late, without one probe on time, before the
#: process sheds (a stall it catches up from sooner is not overload). It counts from the
#: first late probe, which wakes only once a stall is over. At 30 ms the start of an
#: overload was no faster to refuse (503 p99 of a 5,000/s attack 7.8-34 ms, against 9.0-12.5
#: at 100 ms), and 2 processes at 1,000/s refused 19 requests in one of 3 runs.
LATE_FOR_SECONDS = 0.1
#: Shedding is judged by the second: it ends after one in which it refused ...
SHEDDING_SECONDS = 1.0
#: ... fewer than this share of the requests (a handful in flight holds the load again),
#: or fewer than this many (a few long requests a second: batches).
SHEDDING_ENDS_BELOW = 0.01
SHEDDING_ENDS_FEWER_THAN = 3


class Admission:
    """Lets requests in, or tells why not (see the module docstring); counts the requests
    let in until they :meth:`leave`, and every answer (:meth:`count`). One per process,
    used from its event loop only.

    Parameters
    ----------
    metrics
        The API's metrics: answers by route and status, their latency, requests shed, and
        whether the process is shedding.
    max_in_flight
        The most requests handled at once (probes aside); one more is refused.
    retry_after_seconds
        What a refusal's ``Retry-After`` tells the client to wait (seconds).
    max_lag_seconds
        Start shedding once the event loop has run more than this behind with a request in
        flight for :data:`LATE_FOR_SECONDS` (seconds; 0: never).
    shed_in_flight
        The most requests handled at once while shedding.

    Examples
    --------
    >>> from prometheus_client import CollectorRegistry
    >>> admission = Admission(ApiMetrics.create(CollectorRegistry()), 2, 1)
    >>> admission.refusal(), admission.enter(), admission.enter()
    ('', None, None)
    >>> admission.refusal()
    '2 requests in flight (api.max_in_flight)'
    >>> admission.leave(); admission.refusal()
    ''
    >>> admission.retry_after, admission.refused_body("2 requests in flight")
    (b'1', b'{"detail":"overloaded: 2 requests in flight; try again","reason":"overloaded"}')
    """

    def __init__(
        self,
        metrics: ApiMetrics,
        max_in_flight: int,
        retry_after_seconds: int,
        max_lag_seconds: float = 0.0,
        shed_in_flight: int = 8,
    ) -> None:
        self.metrics = metrics
        self.max_in_flight = max_in_flight
        self.retry_after = str(retry_after_seconds).encode()
        #: Shed while the event loop is more than this behind (0: never for that).
        self.max_lag = max_lag_seconds
        self.lag = LoopLag(late=max_lag_seconds)
        self.shed_in_flight = shed_in_flight
        #: Requests let in and not yet answered (one event loop: no lock needed).
        self.in_flight = 0
        #: Shedding since this second began (monotonic; None: not shedding) ...
        self.shedding_second: float | None = None
        #: ... with these requests come in it, and these refused.
        self._seen = self._refused = 0
        #: The metrics' children by (route, status), as :meth:`count` finds them.
        self._children: dict[tuple[str, int], tuple[Any, Any]] = {}

    def enter(self) -> None:
        """Count a request let in (after an empty :meth:`refusal`)."""
        self.in_flight += 1

    def leave(self) -> None:
        """Count a request let in as answered."""
        self.in_flight -= 1

    def count(self, route: str, status: int, seconds: float) -> None:
        """Count an answer of ``status`` to ``route`` that took ``seconds``.

        Parameters
        ----------
        route
            The route's path template ("unmatched": refused before routing).
        status
            The HTTP status answered.
        seconds
            How long the answer took.
        """
        latency, requests = self._children_of(route, status)
        latency.observe(seconds)
        requests.inc()

    def _children_of(self, route: str, status: int) -> tuple[Any, Any]:
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

    def refusal(self) -> str:
        """Why a request must be refused now, counted as shed ("": it may come in)."""
        refused = self._overloaded()
        if refused:
            self.metrics.shed.inc()
        return refused

    @staticmethod
    def refused_body(refusal: str) -> bytes:
        """The JSON body of the 503 that answers a :meth:`refusal`."""
        body = {"detail": f"overloaded: {refusal}; try again", "reason": "overloaded"}
        return json.dumps(body, separators=(",", ":")).encode()

    def _overloaded(self) -> str:
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
            few = max(SHEDDING_ENDS_BELOW * self._seen, SHEDDING_ENDS_FEWER_THAN)
            # (two seconds on: the one just past had no request at all)
            if self._refused < few or now - second >= 2 * SHEDDING_SECONDS:
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

    def close(self) -> None:
        """Stop watching the event loop's lag."""
        self.lag.stop()
