"""How long the event loop is kept from everything else: its lag, measured continuously.

An asyncio loop runs one callback at a time; an agent or timer that computes
for long without awaiting delays every other one (scores, heartbeats, lease
renewals in the loop). :func:`watch_loop` sleeps ``interval`` again and again
and records how much later than asked it woke up.

Examples
--------
>>> import asyncio, time
>>> lags = []
>>> async def main():
...     probe = asyncio.create_task(watch_loop(lags.append, interval=0.01, rounds=5))
...     await asyncio.sleep(0.02)
...     time.sleep(0.2)  # an agent that blocks the loop for 200 ms
...     await probe
>>> asyncio.run(main())
>>> max(lags) >= 0.19
True
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def watch_loop(
    observe: Callable[[float], object], interval: float = 0.25, rounds: int | None = None
) -> None:
    """Record the loop's lag (seconds late) every ``interval`` (``rounds`` times, or
    forever)."""
    loop = asyncio.get_running_loop()
    done = 0
    while rounds is None or done < rounds:
        asked = loop.time() + interval
        await asyncio.sleep(interval)
        observe(max(0.0, loop.time() - asked))
        done += 1
