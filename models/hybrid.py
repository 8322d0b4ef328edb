"""An online model and a batch-refitted one, serving together: their logits blended.

A model refitted in batch from time to time sees every labelled vector at
once and ranks well between refits, but it knows nothing of what came since
its last fit. An online model learns every label as it matures, but one
label at a time. :class:`Hybrid` keeps both, learns every label with both,
and scores with the weighted mean of their log-odds (``online_weight`` for
the online one): until the batch model's fit has learned from ``min_frauds``
frauds, the online model alone (a tree ensemble fitted on a hundred frauds
ranks worse than the online model: on the scorecards, the week after the
first fit loses 0.06 of average precision to it).

Each part keeps its own rules: the online one learns a label once it is
mature (:class:`~models.linear.ScaledLogistic`'s ``hold``), the batch one
keeps every label and refits every ``retrain_every``
(:class:`~models.batch.BatchRetrained`). A copy (what a published snapshot
is) copies the online model and shares the batch model's latest fit.

Examples
--------
>>> import random
>>> from models.batch import BatchRetrained
>>> from models.linear import ScaledLogistic
>>> rnd = random.Random(2)
>>> model = Hybrid(ScaledLogistic(lr=0.01), BatchRetrained("logistic_regression",
...                                                        retrain_every=300), 0.7)
>>> rows = [(x, x + rnd.gauss(0, 0.5) > 1.5) for x in (rnd.gauss(0, 1) for _ in range(600))]
>>> for x, y in rows[:200]:
...     model.learn_one({"x": x}, y)
>>> model.batch.fits, model.predict_proba_one({"x": 2.0}) == model.online.predict_proba_one(
...     {"x": 2.0})  # no fit yet: the online model alone
(0, True)
>>> for x, y in rows[200:]:
...     model.learn_one({"x": x}, y)
>>> p = model.predict_proba_one({"x": 2.0})[True]
>>> online, batch = (part.predict_proba_one({"x": 2.0})[True] for part in model.parts)
>>> model.batch.fits, bool(np.isclose(_logit(p), 0.7 * _logit(online) + 0.3 * _logit(batch)))
(2, True)
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
from river import base

from models.batch import BatchRetrained
from models.linear import ScaledLogistic


class Hybrid(base.Classifier):
    """:class:`~models.linear.ScaledLogistic` and :class:`~models.batch.BatchRetrained`,
    blended in log-odds.

    Parameters
    ----------
    online
        The online model: it learns each label once the label is mature.
    batch
        The batch model: it keeps every label and refits from time to time.
    online_weight
        The online model's weight in the blend of log-odds, from 0 to 1 (the batch
        model's: the rest).
    min_frauds
        The online model scores alone until the batch model's latest fit learned from
        this many frauds.
    """

    def __init__(
        self,
        online: ScaledLogistic,
        batch: BatchRetrained,
        online_weight: float = 0.5,
        min_frauds: int = 0,
    ) -> None:
        if not 0.0 <= online_weight <= 1.0:
            raise ValueError(f"online_weight: {online_weight} is not between 0 and 1")
        self.online = online
        self.batch = batch
        self.online_weight = online_weight
        self.min_frauds = min_frauds
        #: The online model's columns, the batch model's names, and where each of those is
        #: among the columns (computed once, for :meth:`batch_matrix`).
        self._order: tuple[tuple[Hashable, ...], Any, list[int]] | None = None

    @property
    def blending(self) -> bool:
        """Whether the batch model's fit takes part (it has learned from enough frauds)."""
        return self.batch.fits > 0 and self.batch.fitted_frauds >= self.min_frauds

    @property
    def parts(self) -> tuple[ScaledLogistic, BatchRetrained]:
        return self.online, self.batch

    def learn_one(
        self,
        x: dict[Hashable, Any],
        y: Any,
        *,
        scored_at: float | None = None,
        known_at: float | None = None,
    ) -> None:
        """Teach both parts ``x`` as ``y``, each by its own rules.

        Parameters
        ----------
        x
            The feature vector.
        y
            The label (truthy: fraud).
        scored_at
            The transaction's event time (seconds), for the online part's ``hold``.
        known_at
            When the label arrived (event time, seconds), for both parts.
        """
        self.online.learn_one(x, y, scored_at=scored_at, known_at=known_at)
        self.batch.learn_one(x, y, known_at=known_at)

    def predict_proba_one(
        self, x: dict[Hashable, Any], **kwargs: Any
    ) -> dict[base.typing.ClfTarget, float]:
        """The probabilities of ``False`` and ``True`` (fraud) for ``x``, as :meth:`blend`
        blends them.

        Parameters
        ----------
        x
            The feature vector.
        **kwargs
            Ignored (River's signature).
        """
        online = self.online.predict_proba_one(x)[True]
        if not self.blending:
            return {False: 1.0 - online, True: online}
        p = float(self.blend(np.array([online]), self.batch_rows([x]))[0])
        return {False: 1.0 - p, True: p}

    def batch_rows(self, vectors: Sequence[Mapping[Any, float]]) -> np.ndarray:
        """The batch model's scores of ``vectors`` (its latest fit)."""
        return self.batch.probabilities(self.batch.matrix(vectors))

    def batch_matrix(self, rows: np.ndarray, columns: Sequence[Hashable]) -> np.ndarray | None:
        """The batch model's scores of a matrix whose columns are ``columns`` (the online
        model's matrix, reordered: not built again from the vectors); None when the batch
        model knows a feature that is not among them.

        Parameters
        ----------
        rows
            The vectors as a matrix, one row each.
        columns
            The feature of each column of ``rows``.
        """
        key, names = tuple(columns), self.batch.names
        if self._order is None or self._order[0] != key or self._order[1] is not names:
            index = {name: i for i, name in enumerate(key)}
            self._order = (key, names, [index.get(n, -1) for n in names or []])
        order = self._order[2]
        return None if -1 in order else self.batch.probabilities(rows[:, order])

    def blend(self, online: np.ndarray, batch: np.ndarray) -> np.ndarray:
        """The blended probabilities of the two parts' (``online`` until :attr:`blending`).

        Parameters
        ----------
        online, batch
            The online and the batch model's fraud probabilities of the same vectors.
        """
        if not self.blending:
            return online
        w = self.online_weight
        return np.asarray(_sigmoid(w * _logit(online) + (1.0 - w) * _logit(batch)))


def _logit(p: Any) -> Any:
    clipped = np.clip(p, 1e-9, 1 - 1e-9)
    return np.log(clipped / (1 - clipped))


def _sigmoid(z: Any) -> Any:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))
