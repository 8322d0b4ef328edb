"""Offline features: events through the same scoring code, state in memory (no Kafka).

:func:`replay_features` feeds transactions and labels, in the order given,
through :func:`models.scoring.score_batch` (the stream agent's routine) over
a :class:`~features.memory.MemoryFeatureStore`; fraud labels are recorded
for their terminal exactly as the learner records them. The result is the
vector every transaction was scored with, which for one ordered partition
equals the stream's (``tests/integration/test_parity.py``).

Examples
--------
>>> import asyncio
>>> from features.events import Label, Transaction
>>> events = [Transaction("a", "c", "p", 10.0, 0.0), Label("a", True, 50.0),
...           Transaction("b", "c", "p", 5.0, 86400.0 * 2)]
>>> records = asyncio.run(replay_features(events))
>>> records["b"].features["terminal_fraud_count_7d"], records["b"].features["card_txn_count_7d"]
(1.0, 1.0)
"""

from __future__ import annotations

from collections.abc import Iterable

from features.events import Label, Transaction
from features.memory import MemoryFeatureStore
from features.store import FeatureStore, ScoredRecord
from models.factory import build_model
from models.scoring import ModelHolder, ServingModel, score_batch


async def replay_features(
    events: Iterable[Transaction | Label],
    *,
    allowed_lateness: float = 3600.0,
    model_name: str = "logistic_regression",
    batch_size: int = 500,
    store: FeatureStore | None = None,
) -> dict[str, ScoredRecord | None]:
    """Each transaction's record as scored in order (``None`` when too late).

    Parameters
    ----------
    events
        Transactions and labels in arrival order (fraud labels update their terminal).
    allowed_lateness
        How late a transaction may come behind its card's newest one (seconds).
    model_name
        The model that scores (the vectors do not depend on it).
    batch_size
        Transactions per :func:`~models.scoring.score_batch` call, as the stream batches.
    store
        The feature store (default: a fresh in-memory one).

    Returns
    -------
    dict[str, ScoredRecord | None]
        Each transaction id's record: its vector, score and model version.
    """
    store = store or MemoryFeatureStore(allowed_lateness=allowed_lateness)
    holder = ModelHolder()
    holder.swap(ServingModel(0, build_model(model_name)))
    records: dict[str, ScoredRecord | None] = {}
    pending: list[Transaction] = []

    async def flush() -> None:
        for result in await score_batch(store, holder, pending):
            records[result.txn.txn_id] = result.record
        pending.clear()

    for event in events:
        if isinstance(event, Transaction):
            pending.append(event)
            if len(pending) >= batch_size:
                await flush()
            continue
        await flush()
        record = await store.scored(event.txn_id, event.card_id)
        if record is not None and event.is_fraud:
            await store.record_fraud(record, event)
    await flush()
    return records
