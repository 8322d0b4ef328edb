"""What an embedded run (:mod:`stream.scorecard.embedded`) takes and gives: its options (the
champion, the challengers compared, the frozen baseline, the promotion rule, the detectors)
and its result (every transaction's scores and label, the alarms, the statistics)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from features.store import ScoredRecord
from monitoring.drift.base import DriftEvent
from monitoring.drift.config import DriftConfig

FROZEN = "frozen"
#: The scores of whichever model served each transaction (with a promotion rule).
SERVED = "served"


@dataclass(frozen=True)
class Promotion:
    """When a challenger takes over: on the last ``labels`` labelled transactions both
    scored, its AP ahead by ``margin`` with a paired bootstrap p-value at most ``alpha``,
    tested every ``every`` labels (by default half the sample). After a promotion the
    sample starts again: the next test sees only labels that came after it. (The worker's
    values are the ``drift.auto_promote_*`` settings.)"""

    labels: int
    margin: float
    alpha: float
    every: int = 0

    @property
    def period(self) -> int:
        return self.every or max(1, self.labels // 2)


@dataclass(frozen=True)
class EmbeddedOptions:
    """What to run: the champion, challengers, snapshots, batches, detectors."""

    model: str = "hybrid_gradient_boosting"
    compare: tuple[str, ...] = ()
    snapshot_every_labels: int = 100
    #: The frozen baseline stops learning this many days after the first transaction's
    #: midnight (None: no baseline).
    freeze_after_days: float | None = 14.0
    batch_size: int = 500
    allowed_lateness: float = 3600.0
    threshold: float = 0.5
    #: The drift detectors' settings (None: no monitor), and the features data drift
    #: watches (empty: the worker's default, :func:`stream.wiring.watched_features`).
    drift: DriftConfig | None = field(default_factory=DriftConfig)
    watched: tuple[str, ...] = ()
    #: Keep every scored vector (for parity tests; a long run would hold them all).
    keep_records: bool = False
    #: Keep every vector as a row of float32 (4 bytes a feature a transaction), to judge each
    #: feature's own signal.
    keep_vectors: bool = False
    #: Promote a ``compare`` model that beats the serving one (None: never).
    promote: Promotion | None = None


@dataclass
class EmbeddedResult:
    """Per transaction (in arrival order): id, time, card, each model's score (NaN: not
    scored, too late), its label (1/0, -1: none) and the label's arrival time; the
    alarms; each watched statistic over event time; counts."""

    txn_ids: list[str]
    times: np.ndarray
    cards: np.ndarray
    scores: dict[str, np.ndarray]
    label_fraud: np.ndarray
    label_time: np.ndarray
    alarms: list[DriftEvent]
    #: ``name -> [(event time, value), ...]``: each detector statistic when it was checked.
    statistics: dict[str, list[tuple[float, float]]]
    champion: str
    scored: int = 0
    too_late: int = 0
    learned: int = 0
    duplicate_labels: int = 0
    unknown_labels: int = 0
    seconds: float = 0.0
    records: dict[str, ScoredRecord] = field(default_factory=dict)
    #: With ``keep_vectors``: one row per transaction, columns in FEATURE_NAMES order (NaN:
    #: not scored).
    vectors: np.ndarray | None = None
    #: Each promotion: when (event time), from and to which model, their AP and the p-value.
    promotions: list[dict[str, float | str]] = field(default_factory=list)

    @property
    def events(self) -> int:
        return len(self.txn_ids) + self.learned + self.duplicate_labels + self.unknown_labels
