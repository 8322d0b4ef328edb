"""Scoring a transaction: view its features, score them, record both.

:func:`score_transaction` is the one scoring routine of the stream agent;
the API uses :func:`score_readonly`, which computes the same vector from the
same state but writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from river import base

from features.card import step, view
from features.events import Transaction
from features.store import FeatureStore, ScoredRecord
from models.errors import NoModelError
from models.factory import fraud_probability


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

    def swap(self, serving: ServingModel) -> None:
        self.current = serving

    def require(self) -> ServingModel:
        if self.current is None:
            raise NoModelError("no model snapshot has been loaded yet")
        return self.current


async def score_transaction(
    store: FeatureStore, holder: ModelHolder, txn: Transaction
) -> tuple[ScoredRecord, bool]:
    """Score ``txn`` and fold it into its card's state, exactly once.

    Returns the record and whether ``txn`` had already been scored (then the
    stored record is returned unchanged and nothing is written).
    """
    state, existing = await store.begin(txn)
    if existing is not None:
        return existing, True
    record = _score(holder.require(), txn, view(state, txn))
    await store.commit(txn, step(state, txn), record)
    return record, False


async def score_readonly(
    store: FeatureStore, holder: ModelHolder, txn: Transaction
) -> ScoredRecord:
    """Score ``txn`` from its card's current state without writing anything."""
    state = await store.card_state(txn.card_id)
    return _score(holder.require(), txn, view(state, txn))


def _score(serving: ServingModel, txn: Transaction, features: dict[str, float]) -> ScoredRecord:
    return ScoredRecord(
        txn_id=txn.txn_id,
        card_id=txn.card_id,
        event_time=txn.event_time,
        features=features,
        score=fraud_probability(serving.model, features),
        model_version=serving.version,
    )
