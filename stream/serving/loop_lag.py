"""How far behind its schedule the running event loop keeps running (:class:`LoopLag`):
the signal :mod:`stream.serving.guard` starts shedding load on."""

from __future__ import annotations

import asyncio
import time


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
