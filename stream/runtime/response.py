"""The automatic response to concept drift (off unless ``drift.auto_challenger`` names a model).

On a concept-drift alarm (ADWIN or Page-Hinkley on the champion's loss),
:class:`AutoChallenger` starts a challenger of that model, trains it on the
most recent labelled vectors (``drift.auto_recent_labels``), and lets it
score in shadow and learn like any challenger. Once it has its own scores
for ``drift.auto_promote_labels`` labels, its average precision over the
last that-many transactions both scored is compared with the champion's on
the same transactions: if it is ahead by ``drift.auto_promote_margin`` and a
paired bootstrap on AP gives a p-value of at most ``drift.auto_promote_alpha``,
it is promoted (an audited change, by ``auto-response``). Every step is
logged.

With ``drift.auto_promote_challengers``, the challengers the settings name
(``model.challengers``) are held to the same rule on every snapshot timer and
promoted the same way (by ``auto-promote``): a batch model retrained every
week, run as a challenger, serves once it is clearly better. ``fraudstream
scorecard --promote`` replays a stream with this rule.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np

from features.events import Label
from features.store import FeatureStore, ScoredRecord
from models.challengers import Challengers
from models.evaluation import Prequential, average_precision
from models.learner import Learner
from models.registry import ModelRegistry
from models.significance import paired_bootstrap_ap
from monitoring.drift.base import DriftEvent
from stream.settings import Settings

log = logging.getLogger(__name__)
CONCEPT_DETECTORS = ("adwin", "page_hinkley")


def ahead(
    pairs: Sequence[tuple[float, float, bool]], labels: int, margin: float, alpha: float
) -> tuple[bool, float, float, float]:
    """Whether the challenger beats the champion on the last ``labels`` transactions both
    scored: its AP ahead by ``margin`` and a paired bootstrap's p-value at most ``alpha``
    (:func:`models.significance.paired_bootstrap_ap`). Also the champion's AP, the
    challenger's and the p-value (NaN before ``labels`` pairs).

    >>> import random
    >>> rnd = random.Random(2)
    >>> truth = [rnd.random() < 0.1 for _ in range(600)]
    >>> pairs = [(rnd.random(), float(y) * 0.5 + rnd.random() * 0.6, y) for y in truth]
    >>> better, ours, theirs, p = ahead(pairs, 500, 0.05, 0.05)
    >>> better, ours < 0.3 < theirs, p < 0.01
    (True, True, True)
    >>> ahead(pairs[:100], 500, 0.05, 0.05)[0]
    False
    """
    if len(pairs) < labels:
        return False, math.nan, math.nan, math.nan
    last = list(pairs)[-labels:]
    champion = np.array([c for c, _, _ in last])
    challenger = np.array([s for _, s, _ in last])
    truth = np.array([y for _, _, y in last])
    ours, theirs = average_precision(champion, truth), average_precision(challenger, truth)
    if math.isnan(theirs) or not (math.isnan(ours) or theirs > ours + margin):
        return False, ours, theirs, math.nan
    p = paired_bootstrap_ap(champion, challenger, truth)
    return p <= alpha, ours, theirs, p


class AutoChallenger:
    """Starts and promotes a challenger when the champion's concept drifts."""

    def __init__(
        self,
        settings: Settings,
        registry: ModelRegistry,
        store: FeatureStore,
        challengers: Challengers,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.store = store
        self.challengers = challengers
        drift = settings.drift
        self.model = drift.auto_challenger
        self.recent: deque[tuple[dict[str, float], bool]] = deque(maxlen=drift.auto_recent_labels)
        self.active: str | None = None
        self.started = 0

    def remember(self, record: ScoredRecord, label: Label) -> None:
        """Keep the latest labelled vectors, to train a challenger on recent data."""
        self.recent.append((record.features, label.is_fraud))

    async def on_events(self, events: Sequence[DriftEvent]) -> None:
        if self.model is None or self.active is not None:
            return
        if not any(e.detector in CONCEPT_DETECTORS for e in events):
            return
        self.started += 1
        name = f"auto-{self.model}-{self.started}"
        async with self.challengers.lock:
            challenger = await Learner.start(
                self.registry.challenger(name),
                self.store,
                self.model,
                self.settings.model.snapshot_every_labels,
                shadow_name=name,
                quality=Prequential(),
                snapshot_min_seconds=self.settings.model.snapshot_min_seconds,
            )
            self.challengers.add(name, challenger, list(self.recent))
        self.active = name
        log.warning(
            "concept drift: started challenger %s (%s) trained on the last %d labels",
            name,
            self.model,
            len(self.recent),
        )

    async def on_timer(self) -> None:
        """Promote a challenger once it is clearly better: the one started on concept
        drift, and with ``drift.auto_promote_challengers`` the configured ones."""
        drift = self.settings.drift
        candidates = (
            []
            if self.active is None
            else [(self.active, "auto-response", "auto-response to concept drift")]
        )
        if drift.auto_promote_challengers:
            candidates += [
                (name, "auto-promote", "challenger ahead on shadow scores")
                for name in self.settings.model.challengers
            ]
        for name, who, reason in candidates:
            challenger = self.challengers.learners.get(name)
            if challenger is None:
                continue
            better, ours, theirs, p = ahead(
                challenger.pairs,
                drift.auto_promote_labels,
                drift.auto_promote_margin,
                drift.auto_promote_alpha,
            )
            if not better:
                continue
            why = (
                f"{reason}: {name} AP {theirs:.3f} vs champion {ours:.3f} on the same "
                f"last {drift.auto_promote_labels} labels (paired bootstrap p = {p:.3g})"
            )
            async with self.challengers.lock:
                await challenger.publish()
                await self.registry.adopt(
                    challenger.registry, who, why, datetime.now(tz=UTC).isoformat()
                )
                self.challengers.remove(name)
            if name == self.active:
                self.active = None
            log.warning("promoted %s: %s", name, why)
            return
