"""The batch fits of :class:`models.batch.BatchRetrained`: scikit-learn models fitted from
scratch on stored vectors, on every fraud and a sample of the genuine rows, returned in the
form the batch model scores with (a linear model's weights, or :class:`FlatTrees`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from models.trees import FlatTrees

KINDS = ("logistic_regression", "gradient_boosting")


def sample(y: np.ndarray, seed: int, max_genuine: int | None) -> tuple[np.ndarray | None, float]:
    """The rows a fit learns from: every fraud and a uniform sample of ``max_genuine``
    genuine rows (None: all rows), and the log of the genuine rows' sampling rate, by
    which the fit's log-odds are moved back (a fit's cost grows with its rows, and the
    genuine ones are 99% of them).

    Parameters
    ----------
    y
        The rows' labels (True: fraud).
    seed
        Seed of the genuine rows' sampling.
    max_genuine
        How many genuine rows to keep at most (None: all rows).

    Examples
    --------
    >>> rows, shift = sample(np.array([True, False, False, False, False]), 0, 2)
    >>> bool(rows[0] == 0), len(rows), round(shift, 3)
    (True, 3, -0.693)
    >>> sample(np.array([True, False]), 0, 2)
    (None, 0.0)
    """
    genuine = np.flatnonzero(~y)
    if max_genuine is None or len(genuine) <= max_genuine:
        return None, 0.0
    kept = np.random.default_rng(seed).choice(genuine, max_genuine, replace=False)
    return (
        np.sort(np.concatenate([np.flatnonzero(y), kept])),
        math.log(max_genuine / len(genuine)),
    )


def fit(
    kind: str,
    x: np.ndarray,
    y: np.ndarray,
    seed: int,
    max_genuine: int | None = None,
    shift: float = 0.0,
) -> Any:
    """A ``kind`` model fitted on ``x`` and ``y``, in the form :class:`BatchRetrained` scores
    with: a linear model's (weights, intercept) on raw inputs, or :class:`FlatTrees`.

    With ``max_genuine``, on the rows :func:`sample` keeps; ``shift`` is added to the
    log-odds (rows sampled by the caller).

    Parameters
    ----------
    kind
        ``"logistic_regression"`` (standard-scaled) or ``"gradient_boosting"``
        (``HistGradientBoostingClassifier``): one of :data:`KINDS`.
    x
        The rows, one per label, one column per feature.
    y
        The rows' labels (True: fraud).
    seed
        Seed of the genuine rows' sampling and of the gradient boosting.
    max_genuine
        Fit on every fraud and at most this many genuine rows (None: all rows).
    shift
        Added to the fit's log-odds: the log of the genuine rows' sampling rate when the
        caller sampled them.
    """
    rows, sampled = sample(y, seed, max_genuine)
    if rows is not None:
        x, y = x[rows], y[rows]
    shift += sampled
    x = np.asarray(x, dtype=float)
    if kind == "logistic_regression":
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
        model.fit(x, y)
        scaler, regression = model[0], model[1]
        scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
        weights = regression.coef_[0] / scale
        return weights, float(regression.intercept_[0] - weights @ scaler.mean_) + shift
    from sklearn.ensemble import HistGradientBoostingClassifier

    with threadpool_limits(1):  # OpenMP on 2 loaded cores: 40 s for a 1 s fit
        fitted = HistGradientBoostingClassifier(
            max_iter=200, learning_rate=0.1, random_state=seed
        ).fit(x, y)
    flat = FlatTrees.of(fitted)  # scored in numpy: 0.1 ms a row, not 3
    return dataclasses.replace(flat, baseline=flat.baseline + shift) if shift else flat
