"""Batch-retrained challengers: scikit-learn models refitted on the stored vectors.

The online champion must beat a model that is simply retrained in batch
from time to time on everything labelled so far. :class:`BatchRetrained`
is that model behind River's classifier vocabulary, so it runs wherever a
River model does (a challenger in shadow, the scorecard's ``--compare``):

- ``learn_one`` keeps the vector and its label (the last ``keep`` of them)
  and refits from scratch every ``retrain_every`` labels (the learner passes
  no time, so the cadence is counted in labels: at 1,000 simulated customers
  10,000 labels are about four days);
- ``predict_proba_one`` scores with the latest fit (the base rate before
  the first one).

A copy (``copy.deepcopy``, what a published snapshot is) shares the fitted
model, which is replaced at each refit and never changed, and leaves the
kept vectors behind: a snapshot only scores.

Examples
--------
>>> import random
>>> rnd = random.Random(1)
>>> model = BatchRetrained("logistic_regression", retrain_every=200)
>>> for _ in range(400):
...     x = rnd.gauss(0, 1)
...     model.learn_one({"x": x}, x + rnd.gauss(0, 0.5) > 1.5)
>>> model.fits, model.predict_proba_one({"x": 3.0})[True] > 0.9
(2, True)
>>> import copy
>>> len(copy.deepcopy(model).rows), copy.deepcopy(model).fits
(0, 2)
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
from river import base
from threadpoolctl import threadpool_limits

KINDS = ("logistic_regression", "gradient_boosting")


class BatchRetrained(base.Classifier):
    """A scikit-learn model refitted every ``retrain_every`` labels on the last ``keep``."""

    def __init__(self, kind: str = "gradient_boosting", retrain_every: int = 10_000,
                 keep: int = 200_000, seed: int = 42) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind: {kind!r} is not one of {', '.join(KINDS)}")
        self.kind = kind
        self.retrain_every = retrain_every
        self.keep = keep
        self.seed = seed
        self.names: list[str] | None = None
        self.rows: list[list[float]] = []
        self.labels: list[bool] = []
        self.learned = 0
        self.fits = 0
        self._fitted: Any = None
        self._base_rate = 0.0

    def learn_one(self, x: dict[Any, Any], y: Any, **kwargs: Any) -> None:
        if self.names is None:
            self.names = sorted(x)
        self.rows.append([float(x.get(name, 0.0)) for name in self.names])
        self.labels.append(bool(y))
        self.learned += 1
        if len(self.rows) > self.keep * 1.2:
            del self.rows[: len(self.rows) - self.keep]
            del self.labels[: len(self.labels) - self.keep]
        if self.learned % self.retrain_every == 0:
            self._fit()

    def _fit(self) -> None:
        y = np.array(self.labels[-self.keep:])
        self._base_rate = float(y.mean())
        if y.all() or not y.any():
            return
        x = np.array(self.rows[-self.keep:], dtype=float)
        if self.kind == "logistic_regression":
            from sklearn.linear_model import LogisticRegression
            from sklearn.pipeline import make_pipeline
            from sklearn.preprocessing import StandardScaler

            model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
            model.fit(x, y)
            scaler, regression = model[0], model[1]
            scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
            weights = regression.coef_[0] / scale
            self._fitted = (weights, float(regression.intercept_[0] - weights @ scaler.mean_))
        else:
            from sklearn.ensemble import HistGradientBoostingClassifier

            with threadpool_limits(1):
                self._fitted = HistGradientBoostingClassifier(
                    max_iter=200, learning_rate=0.1, random_state=self.seed).fit(x, y)
        self.fits += 1

    def predict_proba_one(self, x: dict[Any, Any], **kwargs: Any) -> dict[Any, float]:
        if self._fitted is None or self.names is None:
            return {False: 1 - self._base_rate, True: self._base_rate}
        p = float(self._probabilities(np.array([[float(x.get(n, 0.0)) for n in self.names]]))[0])
        return {False: 1 - p, True: p}

    def predict_proba_many(self, X: Any) -> Any:
        """Scores of a whole frame of vectors at once (a scikit-learn call costs about a
        millisecond however many rows it gets)."""
        import pandas as pd

        if self._fitted is None or self.names is None:
            p = np.full(len(X), self._base_rate)
        else:
            p = self._probabilities(X.reindex(columns=self.names, fill_value=0.0)
                                    .to_numpy(dtype=float))
        return pd.DataFrame({False: 1 - p, True: p}, index=X.index)

    def _probabilities(self, rows: np.ndarray) -> np.ndarray:
        if self.kind == "logistic_regression":
            weights, intercept = self._fitted
            return np.asarray(1 / (1 + np.exp(-np.clip(rows @ weights + intercept, -30, 30))))
        with threadpool_limits(1):  # OpenMP on 2 loaded cores: 40 s for a 1 s fit
            return np.asarray(self._fitted.predict_proba(rows)[:, 1])

    def __deepcopy__(self, memo: dict[int, Any]) -> BatchRetrained:
        twin = copy.copy(self)
        twin.rows, twin.labels = [], []  # a snapshot scores; the fitted model is shared
        return twin
