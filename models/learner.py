"""The learner: the single writer of the model.

Each label is joined with the vector its transaction was scored with (from
the feature store, never recomputed), taught to the model, and journaled.
Every ``snapshot_every_labels`` labels (or when the caller asks, e.g. on a
timer) a new signed snapshot is published; see :mod:`models.registry` for
why this is crash-safe.
"""

from __future__ import annotations

import copy
import enum
import json
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from river import base

from features.events import Label
from features.store import FeatureStore, ScoredRecord
from features.vector import FEATURE_SET_VERSION
from models.errors import ChampionChangedError, NoModelError
from models.evaluation import Prequential
from models.factory import build_model, learn
from models.registry import JournalEntry, ModelRegistry, SnapshotMeta
from models.scoring import ServingModel

#: The (champion, challenger, truth) pairs a challenger keeps for its promotion test.
PAIRS_KEPT = 20_000


class Outcome(enum.Enum):
    """What became of one label."""

    LEARNED = "learned"
    DUPLICATE = "duplicate"
    UNKNOWN_TRANSACTION = "unknown_transaction"


@dataclass
class Learner:
    """Teaches one model from late labels and publishes its snapshots."""

    model: base.Classifier
    meta: SnapshotMeta
    registry: ModelRegistry
    store: FeatureStore
    snapshot_every_labels: int = 100
    unpublished: int = 0
    last_label_time: float | None = None
    #: Prequential quality of the model's own scores (recorded before their labels).
    quality: Prequential = field(default_factory=Prequential)
    #: Seconds from the last learned transaction to its label.
    last_delay: float = 0.0
    #: For a challenger: its name, under which its shadow scores are recorded.
    shadow_name: str | None = None
    #: The record of the transaction whose label was learned last.
    last_record: ScoredRecord | None = None
    #: For a challenger: (champion's score, its own, truth) of each learned label whose
    #: transaction both scored, the pairs a promotion is tested on.
    pairs: deque[tuple[float, float, bool]] = field(
        default_factory=lambda: deque(maxlen=PAIRS_KEPT))

    @classmethod
    async def start(
        cls, registry: ModelRegistry, store: FeatureStore, model_name: str,
        snapshot_every_labels: int = 100, shadow_name: str | None = None,
        quality: Prequential | None = None,
    ) -> Learner:
        """Resume from the latest snapshot and its journal, or publish a new model."""
        try:
            meta, model = await registry.load()
        except NoModelError:
            model = build_model(model_name)
            empty = SnapshotMeta(0, None, model_name, FEATURE_SET_VERSION, 0, None)
            meta = await registry.publish(model, empty)
        learner = cls(model, meta, registry, store, snapshot_every_labels,
                      quality=quality or Prequential(), shadow_name=shadow_name)
        for entry in await registry.journal():
            learn(learner.model, entry.features, entry.is_fraud)
            learner.unpublished += 1
        return learner

    @property
    def labels_learned(self) -> int:
        return self.meta.labels_learned + self.unpublished

    async def learn(self, label: Label) -> tuple[Outcome, ServingModel | None]:
        """Teach the model ``label`` with its transaction's stored vector.

        Returns the outcome and, when this label completed a batch, the newly
        published snapshot.
        """
        if await self.registry.was_learned(label.txn_id):
            return Outcome.DUPLICATE, None
        record = await self.store.scored(label.txn_id)
        if record is None:
            return Outcome.UNKNOWN_TRANSACTION, None
        # Writes first, each safe to repeat, so a failure here leaves the
        # in-memory model untouched and the retried label is learned once.
        if label.is_fraud:
            await self.store.record_fraud(record, label)
        await self.registry.record_learned(
            JournalEntry(label.txn_id, label.is_fraud, record.features)
        )
        learn(self.model, record.features, label.is_fraud)
        score = record.score if self.shadow_name is None else record.shadow.get(self.shadow_name)
        if score is not None:  # a challenger added later has no score for older transactions
            self.quality.record(score, label.is_fraud, record.card_id, record.event_time,
                                label.event_time)
            if self.shadow_name is not None:
                self.pairs.append((record.score, score, label.is_fraud))
        self.last_delay = label.event_time - record.event_time
        self.last_record = record
        self.unpublished += 1
        self.last_label_time = label.event_time
        published = None
        if self.unpublished >= self.snapshot_every_labels:
            published = await self.publish()
        return Outcome.LEARNED, published

    async def follow_champion(self) -> bool:
        """After a promote or rollback, continue from the new champion.

        The labels learned since the last snapshot (the journal) are taught to
        it again, so none is lost. Returns whether the model changed.
        """
        champion = await self.registry.champion_version()
        if champion is None or champion == self.meta.version:
            return False
        self.meta, self.model = await self.registry.load(champion)
        journal = await self.registry.journal()
        for entry in journal:
            learn(self.model, entry.features, entry.is_fraud)
        self.unpublished = len(journal)
        return True

    async def publish(self) -> ServingModel:
        """Publish the model as a new version; return a read-only copy of it."""
        try:
            return await self._publish()
        except ChampionChangedError:  # an operator moved the champion meanwhile
            await self.follow_champion()
            return await self._publish()

    async def _publish(self) -> ServingModel:
        meta = SnapshotMeta(
            version=0,
            parent=self.meta.version,
            model_name=self.meta.model_name,
            feature_set_version=FEATURE_SET_VERSION,
            labels_learned=self.labels_learned,
            created_at=self.last_label_time or self.meta.created_at,
            metrics=_finite(self.quality.report()) if len(self.quality) else None,
            params=_params(self.model),
        )
        self.meta = await self.registry.publish(self.model, meta)
        self.unpublished = 0
        return ServingModel(self.meta.version, copy.deepcopy(self.model))

    async def publish_if_changed(self) -> ServingModel | None:
        """Publish only when something was learned since the last snapshot."""
        return await self.publish() if self.unpublished else None


def _finite(report: dict[str, float]) -> dict[str, float]:
    """The report without undefined values (JSON has no NaN)."""
    return {k: v for k, v in report.items() if not math.isnan(v)}


def _params(model: object) -> dict[str, Any] | None:
    """The model's constructor parameters, as JSON (what River reports)."""
    get = getattr(model, "_get_params", None)
    if get is None:
        return None
    result: dict[str, Any] = json.loads(json.dumps(get(), default=repr))
    return result
