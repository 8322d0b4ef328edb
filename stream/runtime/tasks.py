"""Stopping background tasks that may swallow their cancellation.

On Python 3.11, ``asyncio.wait_for`` can swallow a cancellation that arrives
just as the awaited operation completes (CPython gh-86296, fixed in 3.12).
redis-py 8 runs every command inside ``wait_for`` (its default socket timeout),
so a loop that polls Redis can lose the ``cancel()`` meant to stop it and go on
forever: a server's shutdown that awaits it then hangs. :func:`cancel_and_wait`
cancels again until each task has ended.

Examples
--------
A loop that loses its first cancellation, as one in a Redis command would:

>>> import asyncio
>>> async def poll(rounds):
...     lost = False
...     while True:
...         try:
...             await asyncio.sleep(0.01)
...         except asyncio.CancelledError:
...             if lost:
...                 raise
...             lost = True  # swallowed, as wait_for may
...         rounds.append(1)
>>> async def main():
...     rounds = []
...     task = asyncio.create_task(poll(rounds))
...     await asyncio.sleep(0.05)
...     await cancel_and_wait([task], every=0.05)
...     return task.cancelled()
>>> asyncio.run(main())
True
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

log = logging.getLogger(__name__)


async def cancel_and_wait(tasks: Iterable[asyncio.Task[object]], every: float = 1.0) -> None:
    """Cancel ``tasks`` and wait until every one has ended, cancelling again each ``every``
    seconds those still running. A task that ended with an error has it logged.

    Parameters
    ----------
    tasks
        The tasks to stop.
    every
        Seconds to wait for the tasks between two rounds of cancellation.
    """
    pending = set(tasks)
    while pending:
        for task in pending:
            task.cancel()
        done, pending = await asyncio.wait(pending, timeout=every)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                log.error("background task %s failed", task.get_name(), exc_info=task.exception())
