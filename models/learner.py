"""The learner: the single writer of the model.

Each label is joined with the vector its transaction was scored with (from
the feature store, never recomputed), taught to the model, and journaled.
Every ``snapshot_every_labels`` labels (or when the caller asks, e.g. on a
timer) a new signed snapshot is published; see :mod:`models.registry` for
why this is crash-safe.
"""

from __future__ import annotations

import asyncio
import copy
import enum
import logging
import math
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from river import base

from features.events import Label
from features.store import FeatureStore, ScoredRecord
from features.vector import FEATURE_SET_VERSION
from models.calls import learn_in_order
from models.errors import (
    ChampionChangedError,
    JournalMismatchError,
    NoModelError,
    SnapshotIntegrityError,
)
from models.evaluation import Prequential
from models.factory import build_model
from models.registry import ModelRegistry
from models.scoring import ServingModel
from models.snapshot_notes import SnapshotNotes
from models.snapshots import AuditEntry, JournalEntry, SnapshotMeta
from models.training_rows import TrainingRows

log = logging.getLogger(__name__)

#: The (champion, challenger, truth) pairs a challenger keeps for its promotion test.
PAIRS_KEPT = 20_000
#: How old (wall seconds) the quality report a snapshot carries may be.
REPORT_EVERY_SECONDS = 1.0


class Outcome(enum.Enum):
    """What became of one label."""

    LEARNED = "learned"
    DUPLICATE = "duplicate"
    UNKNOWN_TRANSACTION = "unknown_transaction"


@dataclass(frozen=True, slots=True)
class Learned:
    """What became of one label: for a learned one, its transaction's record, the
    label's delay (seconds) and the snapshot it completed, if any."""

    outcome: Outcome
    record: ScoredRecord | None = None
    delay: float = 0.0
    published: ServingModel | None = None


@dataclass
class Learner:
    """Teaches one model from late labels and publishes its snapshots."""

    model: base.Classifier
    meta: SnapshotMeta
    registry: ModelRegistry
    store: FeatureStore
    snapshot_every_labels: int = 100
    #: ... but not sooner than this many seconds after the last one (wall clock): at
    #: thousands of labels a second, a snapshot every hundred is dozens a second, each
    #: pickled, written to Redis and loaded by every scorer. 0: every hundred labels.
    snapshot_min_seconds: float = 0.0
    unpublished: int = 0
    last_label_time: float | None = None
    #: Prequential quality of the model's own scores (recorded before their labels).
    quality: Prequential = field(default_factory=Prequential)
    #: For a challenger: its name, under which its shadow scores are recorded.
    shadow_name: str | None = None
    #: For a challenger: (champion's score, its own, truth) of each learned label whose
    #: transaction both scored, the pairs a promotion is tested on.
    pairs: deque[tuple[float, float, bool]] = field(
        default_factory=lambda: deque(maxlen=PAIRS_KEPT)
    )
    #: Event time the scoring stream has reached, set by its owner (recorded in snapshots).
    stream_time: float | None = None
    #: Labels of a journal write that raised: applied or not, :meth:`_settle` finds out.
    _unsettled: list[tuple[Label, ScoredRecord]] = field(default_factory=list)
    #: The registry holds something this learner did not write: reload before going on.
    _stale: bool = False
    #: A champion version whose signature failed: the next snapshot is published over it.
    refused_champion: int | None = None
    #: What each snapshot carries besides the model: its parameters and quality report.
    _notes: SnapshotNotes = field(default_factory=SnapshotNotes)
    #: A batch part's training rows, kept in the registry beside the snapshots.
    _rows: TrainingRows = field(default_factory=TrainingRows)
    #: When (monotonic seconds) this learner last published.
    _published_at: float = -math.inf

    @classmethod
    async def start(
        cls,
        registry: ModelRegistry,
        store: FeatureStore,
        model_name: str,
        snapshot_every_labels: int = 100,
        shadow_name: str | None = None,
        quality: Prequential | None = None,
        snapshot_min_seconds: float = 0.0,
    ) -> Learner:
        """Resume from the latest snapshot and its journal, or publish a new model.

        Parameters
        ----------
        registry
            The lineage resumed and published to.
        store
            The feature store the scored records (vectors) are read from.
        model_name
            The model built (:func:`~models.factory.build_model`) when nothing is published.
        snapshot_every_labels
            Publish a snapshot every this many labels ...
        shadow_name
            For a challenger: its name, under which its shadow scores are recorded (None:
            the champion).
        quality
            The prequential metrics its scores are recorded in (None: new ones).
        snapshot_min_seconds
            ... but not sooner than this many seconds (wall clock) after the last one.
        """
        refused = None
        try:
            meta, model = await registry.load()
        except NoModelError:
            model = build_model(model_name)
            empty = SnapshotMeta(0, None, model_name, FEATURE_SET_VERSION, 0, None)
            meta = await registry.publish(model, empty)
        except SnapshotIntegrityError as exc:  # forged champion: from the newest sound one
            refused = await registry.champion_version()
            sound = [v for v, m in (await registry.kept()).items() if m is not None]
            if not sound:
                raise
            log.error("refusing the champion: %s; resuming from version %d", exc, sound[-1])
            meta, model = await registry.load(sound[-1])
        learner = cls(
            model,
            meta,
            registry,
            store,
            snapshot_every_labels,
            snapshot_min_seconds=snapshot_min_seconds,
            quality=quality or Prequential(),
            shadow_name=shadow_name,
            refused_champion=refused,
        )
        journal = await registry.journal()
        await learner._rows.restore(learner.registry, learner.model, len(journal))
        _replay(learner.model, journal)
        learner.unpublished += len(journal)
        return learner

    @property
    def labels_learned(self) -> int:
        return self.meta.labels_learned + self.unpublished

    async def learn(self, label: Label) -> tuple[Outcome, ServingModel | None]:
        """Teach the model ``label`` with its transaction's stored vector.

        Returns the outcome and, when this label completed a batch, the newly
        published snapshot.
        """
        [one] = await self.learn_many([label])
        return one.outcome, one.published

    async def learn_many(self, labels: Sequence[Label]) -> list[Learned]:
        """:meth:`learn` for many labels, in order, in a few round trips.

        They are taken in parts that end where a snapshot is due, so every
        snapshot holds exactly the labels journaled before it. (A snapshot due
        by its count but not by :attr:`snapshot_min_seconds` waits for the end
        of a later part, or for the caller's timer.)
        """
        out: list[Learned] = []
        start = 0
        while start < len(labels):
            room = self.snapshot_every_labels - self.unpublished
            if room <= 0:  # due by count, held back by time: the rest in one part
                room = len(labels) - start
            out += await self._learn_part(labels[start : start + room])
            start += room
        return out

    async def _settle(self) -> None:
        """Make the model agree with the registry after a write whose outcome is unknown.

        A journal write that raised (a lost reply, Redis gone) either was
        applied, and its labels are marked learned, so they must be taught
        now or never; or was not, and they are learned again when retried.
        The journal's length tells which. Anything else found there (a
        snapshot this learner published without hearing back) is resolved by
        reloading the champion and its journal.
        """
        if self._stale:
            await self.follow_champion(always=True)
            self._stale = False
        if not self._unsettled:
            return
        length = await self.registry.journal_length()
        unsettled, self._unsettled = self._unsettled, []
        if length == self.unpublished + len(unsettled):
            self._teach(unsettled)
        elif length != self.unpublished:
            self._stale = True
            await self._settle()

    async def _learn_part(self, labels: Sequence[Label]) -> list[Learned]:
        await self._settle()
        ids = [label.txn_id for label in labels]
        learned_before, records = await asyncio.gather(  # two reads, one wait
            self.registry.were_learned(ids),
            self.store.scored_many(ids, [label.card_id for label in labels]),
        )
        out: list[Learned] = []
        new: list[tuple[int, Label, ScoredRecord]] = []
        seen: set[str] = set()
        for label, before, record in zip(labels, learned_before, records, strict=True):
            if before or label.txn_id in seen:
                out.append(Learned(Outcome.DUPLICATE, record))
            elif record is None:
                out.append(Learned(Outcome.UNKNOWN_TRANSACTION))
            else:
                seen.add(label.txn_id)
                new.append((len(out), label, record))
                out.append(Learned(Outcome.LEARNED, record, label.event_time - record.event_time))
        # Writes first, each safe to repeat, so a failure here leaves the
        # in-memory model untouched and the retried labels are learned once.
        await self.store.record_frauds(
            [(record, label) for _, label, record in new if label.is_fraud]
        )
        entries = [
            JournalEntry(
                label.txn_id, label.is_fraud, record.features, record.event_time, label.event_time
            )
            for _, label, record in new
        ]
        self._unsettled = [(label, record) for _, label, record in new]
        try:
            await self.registry.record_learned_many(entries, self.unpublished)
        except JournalMismatchError:  # not written: reload, then the retry learns them
            self._unsettled, self._stale = [], True
            raise
        self._unsettled = []
        self._teach([(label, record) for _, label, record in new])
        if (
            new
            and self.unpublished >= self.snapshot_every_labels
            and (time.monotonic() - self._published_at >= self.snapshot_min_seconds)
        ):
            last = new[-1][0]
            out[last] = replace(out[last], published=await self.publish())
        return out

    def _teach(self, labelled: Sequence[tuple[Label, ScoredRecord]]) -> None:
        """Teach the model these labels, in order, and record the quality of their scores."""
        if not labelled:
            return
        learn_in_order(
            self.model,
            [record.features for _, record in labelled],
            [label.is_fraud for label, _ in labelled],
            [record.event_time for _, record in labelled],
            [label.event_time for label, _ in labelled],
        )
        for label, record in labelled:
            score = (
                record.score if self.shadow_name is None else record.shadow.get(self.shadow_name)
            )
            if score is None:  # a challenger added later has no score for older transactions
                continue
            self.quality.record(
                score, label.is_fraud, record.card_id, record.event_time, label.event_time
            )
            if self.shadow_name is not None:
                self.pairs.append((record.score, score, label.is_fraud))
        self.unpublished += len(labelled)
        self.last_label_time = labelled[-1][0].event_time

    async def follow_champion(self, always: bool = False) -> bool:
        """After a promote or rollback, continue from the new champion.

        The labels learned since the last snapshot (the journal) are taught to
        it again, so none is lost. Returns whether the model changed. With
        ``always``, reload even if the champion is the version this learner
        built on (its in-memory model no longer matches the registry).
        """
        champion = await self.registry.champion_version()
        if champion is None or (champion == self.meta.version and not always):
            return False
        if champion == self.refused_champion:
            return False
        try:
            self.meta, self.model = await self.registry.load(champion)
        except SnapshotIntegrityError as exc:  # forged: keep learning, publish over it
            self.refused_champion = champion
            log.error("refusing the champion: %s; the next snapshot replaces it", exc)
            return False
        self.refused_champion = None  # a sound champion again (an operator's doing)
        journal = await self.registry.journal()
        await self._rows.restore(self.registry, self.model, len(journal))
        _replay(self.model, journal)
        self.unpublished = len(journal)
        return True

    async def publish(self) -> ServingModel:
        """Publish the model as a new version; return a read-only copy of it."""
        await self._settle()
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
            metrics=self._notes.metrics(self.quality),
            params=self._notes.params(self.model),
            stream_time=self.stream_time,
        )
        refused = self.refused_champion
        audit = (
            None
            if refused is None
            else AuditEntry(
                "replace refused champion",
                refused,
                0,
                "learner",
                datetime.now(tz=UTC).isoformat(),
                "its snapshot's signature does not match",
            )
        )
        await self._rows.save(self.registry, self.model)
        self.meta = await self.registry.publish(self.model, meta, audit=audit, over=refused)
        self.refused_champion = None  # replaced: nothing refused is champion any more
        self.unpublished = 0
        self._published_at = time.monotonic()
        return ServingModel(self.meta.version, copy.deepcopy(self.model))

    async def publish_if_changed(self) -> ServingModel | None:
        """Publish only when something was learned since the last snapshot, or when the
        champion was refused (it is replaced at once)."""
        changed = self.unpublished or self.refused_champion is not None
        return await self.publish() if changed else None


def _replay(model: base.Classifier, journal: Sequence[JournalEntry]) -> None:
    """Teach ``model`` the journal's labels again, in order and with their times."""
    learn_in_order(
        model,
        [e.features for e in journal],
        [e.is_fraud for e in journal],
        [e.scored_at for e in journal],
        [e.known_at for e in journal],
    )
