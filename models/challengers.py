"""Challengers: models that learn from the same labels as the champion and score every
transaction in shadow, until one is promoted.

:class:`Challengers` owns their learners and the read-only copies the
scorer uses (shadow holders), and the lock under which anything learns or
publishes: the champion's learner and every challenger's change only while
it is held, so a promotion never interleaves with learning.

Examples
--------
>>> import asyncio
>>> shadows = Challengers()
>>> shadows.holders, shadows.names
({}, [])
>>> asyncio.run(shadows.learn_many([])), shadows.pending()
([], 0)
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable, Iterable, Sequence

from features.events import Label
from features.store import FeatureStore
from models.calls import learn
from models.errors import NoModelError
from models.evaluation import Prequential
from models.following import follow
from models.learner import Learner
from models.registry import ModelRegistry
from models.scoring import ModelHolder, ServingModel


class Challengers:
    """The challenger lineages of one champion: learners (for the learner) or only
    their shadow holders (for a scorer that follows them)."""

    def __init__(self) -> None:
        self.learners: dict[str, Learner] = {}
        #: Challenger name -> the snapshot it scores with in shadow.
        self.holders: dict[str, ModelHolder] = {}
        #: Held while the champion's or any challenger's learner learns or publishes.
        self.lock = asyncio.Lock()

    @property
    def names(self) -> list[str]:
        return sorted(self.holders)

    def expect(self, names: Iterable[str]) -> None:
        """Keep a (still empty) shadow holder for each of ``names``."""
        for name in names:
            self.holders.setdefault(name, ModelHolder())

    async def start(
        self,
        registry: ModelRegistry,
        store: FeatureStore,
        names: Iterable[str],
        model_name: Callable[[str], str],
        snapshot_every_labels: int,
        quality: Callable[[], Prequential],
        snapshot_min_seconds: float = 0.0,
    ) -> None:
        """Resume (or create) each challenger ``names`` from its own lineage of
        ``registry``; ``model_name`` maps a challenger to the model it builds.

        Parameters
        ----------
        registry
            The champion's registry; a challenger's lineage is ``registry.challenger(name)``.
        store
            The feature store the learners read the scored vectors from.
        names
            The challengers' names.
        model_name
            Maps a challenger's name to the model it builds when nothing is published yet
            (a :func:`~models.factory.build_model` name).
        snapshot_every_labels
            Each learner publishes a snapshot every this many labels ...
        quality
            Makes each challenger's own prequential metrics (called once per challenger).
        snapshot_min_seconds
            ... but not sooner than this many seconds (wall clock) after its last one.
        """
        for name in names:
            challenger = await Learner.start(
                registry.challenger(name),
                store,
                model_name(name),
                snapshot_every_labels,
                shadow_name=name,
                quality=quality(),
                snapshot_min_seconds=snapshot_min_seconds,
            )
            self.add(name, challenger)

    def add(
        self, name: str, challenger: Learner, recent: Sequence[tuple[dict[str, float], bool]] = ()
    ) -> None:
        """Start ``challenger`` (after teaching it ``recent`` labelled vectors).

        Parameters
        ----------
        name
            The challenger's name.
        challenger
            Its learner; its model is served in shadow at once.
        recent
            (features, is_fraud) pairs taught to its model first, in order.
        """
        for features, is_fraud in recent:
            learn(challenger.model, features, is_fraud)
        self.learners[name] = challenger
        self.holders[name] = ModelHolder()
        self.holders[name].swap(
            ServingModel(challenger.meta.version, copy.deepcopy(challenger.model))
        )

    def remove(self, name: str) -> None:
        self.learners.pop(name, None)
        self.holders.pop(name, None)

    async def learn_many(self, labels: Sequence[Label]) -> list[ServingModel]:
        """Teach every challenger ``labels`` (caller holds :attr:`lock`); the snapshots
        that completed are served in shadow at once and returned."""
        published = []
        for name, challenger in list(self.learners.items()):
            for one in await challenger.learn_many(labels):
                if one.published is not None:
                    self.holders[name].swap(one.published)
                    published.append(one.published)
        return published

    async def publish_if_changed(self) -> None:
        """Publish each challenger that learned since its last snapshot."""
        async with self.lock:
            for name, challenger in list(self.learners.items()):
                shadow = await challenger.publish_if_changed()
                if shadow is not None:
                    self.holders[name].swap(shadow)

    def pending(self) -> int:
        """Labels learned by the challengers and not yet published."""
        return sum(c.unpublished for c in self.learners.values())

    def set_stream_time(self, stream_time: float) -> None:
        for challenger in self.learners.values():
            challenger.stream_time = stream_time

    async def follow(self, registry: ModelRegistry) -> None:
        """Read-only: serve in shadow each challenger's latest published snapshot."""
        for name, holder in list(self.holders.items()):
            try:
                await follow(registry.challenger(name), holder)
            except NoModelError:  # the learner has not started this challenger yet
                continue
