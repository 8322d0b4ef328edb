"""The automatic response to concept drift (off unless ``drift.auto_challenger`` names a model).

On a concept-drift alarm (ADWIN or Page-Hinkley on the champion's loss),
:class:`AutoChallenger` starts a challenger of that model, trains it on the
most recent labelled vectors (``drift.auto_recent_labels``), and lets it
score in shadow and learn like any challenger. Once it has its own scores
for ``drift.auto_promote_labels`` labels, its average precision over its
last that-many labels is compared with the champion's over the same number;
if it is ahead by ``drift.auto_promote_margin``, it is promoted (an audited
change, by ``auto-response``). Every step is logged.
"""

from __future__ import annotations

import copy
import logging
import math
from collections import deque
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from features.events import Label
from features.store import ScoredRecord
from models.evaluation import Prequential
from models.factory import learn
from models.learner import Learner
from models.scoring import ModelHolder, ServingModel
from monitoring.detectors import DriftEvent

if TYPE_CHECKING:
    from stream.processing import Pipeline

log = logging.getLogger(__name__)
CONCEPT_DETECTORS = ("adwin", "page_hinkley")


def ahead(champion: Prequential, challenger: Prequential, labels: int, margin: float) -> bool:
    """Whether the challenger's AP over its last ``labels`` labels beats the champion's by
    ``margin`` (and it has that many).

    >>> a, b = Prequential(), Prequential()
    >>> for score, truth in [(0.9, True), (0.1, False), (0.2, True), (0.8, False)]:
    ...     a.record(score, truth, "c", 0.0, 1.0)
    ...     b.record(1 - score if score in (0.2, 0.8) else score, truth, "c", 0.0, 1.0)
    >>> ahead(a, b, 4, 0.1), ahead(b, a, 4, 0.1)
    (True, False)
    """
    if len(challenger) < labels:
        return False
    theirs = challenger.average_precision_last(labels)
    ours = champion.average_precision_last(labels)
    return not math.isnan(theirs) and (math.isnan(ours) or theirs > ours + margin)


class AutoChallenger:
    """Starts and promotes a challenger when the champion's concept drifts."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        drift = pipeline.settings.drift
        self.model = drift.auto_challenger
        self.recent: deque[tuple[dict[str, float], bool]] = deque(
            maxlen=drift.auto_recent_labels)
        self.active: str | None = None
        self.started = 0

    def remember(self, record: ScoredRecord, label: Label) -> None:
        """Keep the latest labelled vectors, to train a challenger on recent data."""
        self.recent.append((record.features, label.is_fraud))

    async def on_events(self, events: list[DriftEvent]) -> None:
        if self.model is None or self.active is not None:
            return
        if not any(e.detector in CONCEPT_DETECTORS for e in events):
            return
        self.started += 1
        name = f"auto-{self.model}-{self.started}"
        pipeline = self.pipeline
        async with pipeline._learn_lock:
            challenger = await Learner.start(
                pipeline.registry.challenger(name), pipeline.store, self.model,
                pipeline.settings.model.snapshot_every_labels, shadow_name=name,
                quality=Prequential())
            for features, is_fraud in self.recent:
                learn(challenger.model, features, is_fraud)
            pipeline.challengers[name] = challenger
            pipeline.shadows[name] = ModelHolder()
            pipeline.shadows[name].swap(ServingModel(challenger.meta.version,
                                                     copy.deepcopy(challenger.model)))
        self.active = name
        log.warning("concept drift: started challenger %s (%s) trained on the last %d labels",
                    name, self.model, len(self.recent))

    async def on_timer(self) -> None:
        """Promote the active challenger once it is clearly better."""
        pipeline = self.pipeline
        name = self.active
        if name is None or pipeline.learner is None or name not in pipeline.challengers:
            return
        drift = pipeline.settings.drift
        challenger = pipeline.challengers[name]
        champion, labels = pipeline.learner.quality, drift.auto_promote_labels
        if not ahead(champion, challenger.quality, labels, drift.auto_promote_margin):
            return
        ours = champion.average_precision_last(labels)
        theirs = challenger.quality.average_precision_last(labels)
        why = (f"auto-response to concept drift: {name} AP {theirs:.3f} vs champion "
               f"{ours:.3f} over the last {drift.auto_promote_labels} labels")
        async with pipeline._learn_lock:
            await challenger.publish()
            await pipeline.registry.adopt(challenger.registry, "auto-response", why,
                                          datetime.now(tz=UTC).isoformat())
            del pipeline.challengers[name]
            del pipeline.shadows[name]
        self.active = None
        log.warning("promoted %s: %s", name, why)
