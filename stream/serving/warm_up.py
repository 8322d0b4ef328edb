"""A new API process made as fast as a warm one before it serves.

The champion is loaded, the Redis connections its reads use are opened
(concurrent peeks: as many pooled connections, or the one shared connection)
and the scoring path is run once through. It only reads, and logs no decision.

``bench api`` without it: a fresh process refused 203 of the 375 requests of
its first half-second at 750 requests/s (p99 285 ms), and none after the
second second. Redis or the champion away is not an error here: the process
starts, and waits them out as it serves (503 meanwhile).
"""

from __future__ import annotations

import asyncio
import logging
import time

from pydantic_core import to_json

from features.events import Transaction
from features.store import FeatureStore
from models.reasons import reasons
from models.scoring import score_readonly, score_readonly_many
from producers.schema import TransactionRecord
from stream.serving.bodies import read_body
from stream.serving.refresher import ModelRefresher

log = logging.getLogger(__name__)

#: Redis connections a new process opens before it serves (at most ``api.max_in_flight``).
WARM_UP_CONNECTIONS = 16
#: The longest a new process spends warming up before it serves anyway.
WARM_UP_SECONDS = 5.0


async def warm_up(store: FeatureStore, refresher: ModelRefresher, connections: int) -> None:
    """Make a new process as fast as a warm one before it serves (see the module docs).

    Parameters
    ----------
    store
        The feature store the API reads (only read here).
    refresher
        The API's model refresher: the champion is loaded through it.
    connections
        How many peeks run at once: as many pooled connections are opened (one, when the
        reads share one connection).
    """
    started = time.perf_counter()
    try:
        async with asyncio.timeout(WARM_UP_SECONDS):
            await refresher.refresh()
            if refresher.holder.current is None:
                log.info("warm-up: no champion yet; the scoring path is warmed by its first use")
                return
            probe = Transaction("warm-up", "warm-up", "warm-up", 1.0, time.time())
            body = read_body(to_json(TransactionRecord.from_event(probe)), TransactionRecord)
            holder = refresher.holder
            await asyncio.gather(
                *(score_readonly(store, holder, body.to_event()) for _ in range(connections))
            )
            records = await score_readonly_many(store, holder, [probe, probe])
            reasons(holder.require().model, records[0].features, 5)
            to_json({"results": [{"score": r.score} for r in records]})  # (the answers')
    except Exception as exc:  # Redis away, a bad snapshot: served as it comes
        log.warning("warm-up stopped (%r); serving anyway", exc)
        return
    log.info("warmed up in %.0f ms", 1000 * (time.perf_counter() - started))
