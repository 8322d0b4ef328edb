"""Scoring a transaction: view its features, score them, record both.

:func:`score_batch` is the one scoring routine of the stream agent and the
offline replay; the API uses :func:`score_readonly`, which computes the same
vector from the same state but writes nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from river import base

from features.events import Transaction
from features.store import FeatureStore, ScoredRecord, Status
from features.vector import view
from models.calls import fraud_probabilities, fraud_probability
from models.errors import NoModelError


@dataclass(frozen=True, slots=True)
class ServingModel:
    """A read-only model snapshot and its version."""

    version: int
    model: base.Classifier


class ModelHolder:
    """The snapshot currently used for scoring; swapped whole, never mutated.

    Examples
    --------
    >>> holder = ModelHolder()
    >>> holder.require()
    Traceback (most recent call last):
    ...
    models.errors.NoModelError: no model snapshot has been loaded yet
    """

    def __init__(self) -> None:
        self.current: ServingModel | None = None
        #: Champion versions whose signature failed, while champion: never loaded.
        self.refused: set[int] = set()

    def swap(self, serving: ServingModel) -> None:
        self.current = serving

    def require(self) -> ServingModel:
        if self.current is None:
            raise NoModelError("no model snapshot has been loaded yet")
        return self.current


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """One transaction's outcome: its record, or why it has none (``LATE``).

    ``status`` is what the store did with it, ``newest`` its card's newest
    event time when it came too late, ``owner`` the card its id belongs to when
    it came on another (a conflict). The state it was scored from is not
    kept: a batch would otherwise hold every card's decoded history until it
    returns. ``duplicate`` is true when the transaction had been applied
    before (a redelivery): its state was not changed again.
    """

    txn: Transaction
    status: Status
    record: ScoredRecord | None
    newest: float | None = None
    owner: str | None = None

    @property
    def duplicate(self) -> bool:
        return self.status in (Status.DONE, Status.PENDING)


#: Vectors :func:`score_readonly_many` computes between two turns of the event loop: a batch
#: of 100 held the loop for all of its vectors at once, and the API's lag guard took that
#: for overload (bench api: a batch of 100 at 50/s refused in part).
YIELD_EVERY = 25

#: Transactions per store call inside a batch: while one part is scored in
#: Python, Redis applies the next. The first parts are smaller
#: (:func:`parts`), so that scoring starts early.
PART_SIZE = 100


def parts(txns: Sequence[Transaction]) -> list[Sequence[Transaction]]:
    """``txns`` cut into consecutive parts: a quarter of :data:`PART_SIZE`, then
    each part twice the one before, up to :data:`PART_SIZE`.

    Scoring waits only for the first (small) part to be applied; each next
    part is applied by the store in about the time the one before takes to
    be scored (applying costs about half of scoring), and each part's store
    calls are paid once for up to :data:`PART_SIZE` transactions.

    >>> [len(part) for part in parts(list(range(500)))]
    [25, 50, 100, 100, 100, 100, 25]
    """
    out: list[Sequence[Transaction]] = []
    at, size = 0, max(1, PART_SIZE // 4)
    while at < len(txns):
        out.append(txns[at : at + size])
        at += size
        size = min(2 * size, PART_SIZE)
    return out


async def score_batch(
    store: FeatureStore,
    holder: ModelHolder,
    txns: Sequence[Transaction],
    shadows: Mapping[str, ModelHolder] | None = None,
) -> list[BatchOutcome]:
    """Score ``txns`` in order and fold them into their entities' state, exactly once.

    The store applies the :func:`parts` in order, in one round
    trip, and hands each over as soon as it is applied, so part ``k`` is
    scored while Redis applies part ``k + 1``; each part's records are saved
    in one more round trip. A
    transaction applied before gets its saved record back, or, if it was
    never saved, the same vector recomputed from the state it was applied on.
    Challengers in ``shadows`` score every new transaction too; their scores
    are recorded with it, never returned as its score. Returns once every
    record is saved.

    Parameters
    ----------
    store
        The feature store holding each card's and terminal's state (memory, Redis or a
        Redis Cluster: the same results, bit for bit).
    holder
        The serving model (its current verified snapshot).
    txns
        The transactions, in the order their partition delivered them.
    shadows
        Challengers by name, scoring in shadow.

    Returns
    -------
    list[BatchOutcome]
        One per transaction, in order: its saved record, or why it has none (too late, a
        conflicting duplicate).
    """
    serving = holder.require()
    challengers = {name: h.current for name, h in (shadows or {}).items() if h.current is not None}
    results: list[BatchOutcome] = []
    saves: list[asyncio.Task[None]] = []
    try:
        async for applied in store.apply_parts(parts(txns)):
            scored = iter(
                _score_many(
                    serving,
                    [
                        (one.txn, view(one.state, one.txn))
                        for one in applied
                        if one.state is not None
                    ],
                    challengers,
                )
            )
            to_save = []
            for one in applied:
                record = one.record
                if one.state is not None:
                    record = next(scored)
                    to_save.append((one, record))
                results.append(BatchOutcome(one.txn, one.status, record, one.newest, one.owner))
            if to_save:
                saves.append(asyncio.ensure_future(store.save(to_save)))
    finally:
        await asyncio.gather(*saves)
    return results


async def score_readonly(
    store: FeatureStore, holder: ModelHolder, txn: Transaction
) -> ScoredRecord:
    """Score ``txn`` from the current state without writing anything.

    Parameters
    ----------
    store
        The feature store (only read).
    holder
        The serving model (its current verified snapshot).
    txn
        The transaction.
    """
    serving = holder.require()
    return _score(serving, txn, view(await store.peek(txn), txn))


async def score_readonly_many(
    store: FeatureStore, holder: ModelHolder, txns: Sequence[Transaction]
) -> list[ScoredRecord]:
    """:func:`score_readonly` for many transactions: their states in one round trip, each
    as it is now, and one model call.

    Parameters
    ----------
    store
        The feature store (only read).
    holder
        The serving model (its current verified snapshot).
    txns
        The transactions; one record each, in order.
    """
    serving = holder.require()
    states = await store.peek_many(txns)
    vectors: list[tuple[Transaction, dict[str, float]]] = []
    for start in range(0, len(txns), YIELD_EVERY):
        if start:  # a batch's vectors take milliseconds: let other requests in between
            await asyncio.sleep(0)
        end = start + YIELD_EVERY
        vectors += [
            (txn, view(state, txn))
            for txn, state in zip(txns[start:end], states[start:end], strict=True)
        ]
    return _score_many(serving, vectors, {})


def _score_many(
    serving: ServingModel,
    fresh: Sequence[tuple[Transaction, dict[str, float]]],
    challengers: Mapping[str, ServingModel],
) -> list[ScoredRecord]:
    """Score a part's transactions with their vectors: each model in one call (the
    champion's linear shape in numpy, :func:`models.calls.fraud_probabilities`)."""
    if not fresh:
        return []
    vectors = [features for _, features in fresh]
    scores = fraud_probabilities(serving.model, vectors, frames=False).tolist()
    shadows = {
        name: fraud_probabilities(c.model, vectors, frames=False).tolist()
        for name, c in challengers.items()
    }
    return [
        ScoredRecord(
            txn_id=txn.txn_id,
            card_id=txn.card_id,
            terminal_id=txn.terminal_id,
            event_time=txn.event_time,
            features=features,
            score=scores[i],
            model_version=serving.version,
            shadow={name: s[i] for name, s in shadows.items()},
        )
        for i, (txn, features) in enumerate(fresh)
    ]


def _score(
    serving: ServingModel,
    txn: Transaction,
    features: dict[str, float],
    challengers: Mapping[str, ServingModel] | None = None,
) -> ScoredRecord:
    return ScoredRecord(
        txn_id=txn.txn_id,
        card_id=txn.card_id,
        terminal_id=txn.terminal_id,
        event_time=txn.event_time,
        features=features,
        score=fraud_probability(serving.model, features),
        model_version=serving.version,
        shadow={name: fraud_probability(c.model, features) for name, c in challengers.items()}
        if challengers
        else {},
    )
