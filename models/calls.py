"""Scoring and teaching a model of the zoo (:mod:`models.factory`): one vector or many, each
the fastest way the model allows (the champion's arrays in one matrix product, River's
pipeline of that shape rebuilt as arrays, ``*_many`` where a model has it), and labels
learned with their times where the model learns at maturity.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from operator import itemgetter
from typing import Any, cast

import numpy as np
from river import base, compose, linear_model, preprocessing

from models.batch import BatchRetrained
from models.hybrid import Hybrid
from models.linear import ScaledLogistic

#: What River's ``*_one`` methods are typed to take (built once: a subscripted
#: generic is a new object each time it is evaluated).
_RiverFeatures = dict[Hashable, Any]


def fraud_probability(model: base.Classifier, features: Mapping[str, float]) -> float:
    """The model's probability that ``features`` describe a fraud.

    Parameters
    ----------
    model
        Any River classifier (a model of :func:`build_model`).
    features
        The transaction's feature vector.
    """
    return float(model.predict_proba_one(cast(_RiverFeatures, features)).get(True, 0.0))


def fraud_probabilities(
    model: base.Classifier, vectors: Sequence[Mapping[str, float]], frames: bool = True
) -> np.ndarray:
    """:func:`fraud_probability` of many vectors, in one call where the model has one
    (with ``frames=False``, never through a pandas frame: one at a time unless the
    model is the champion's linear shape, scored in numpy).

    Parameters
    ----------
    model
        Any River classifier (a model of :func:`build_model`).
    vectors
        The feature vectors; one probability each, in order.
    frames
        Whether a model may score them through a pandas frame (its ``predict_proba_many``).

    Examples
    --------
    >>> from models.factory import build_model
    >>> model = build_model("logistic_regression")
    >>> learn(model, {"x": 2.0}, True)
    >>> vectors = [{"x": 2.0}, {"x": -1.0}]
    >>> bool(np.isclose(fraud_probabilities(model, vectors)[0],
    ...                 fraud_probability(model, vectors[0]), rtol=1e-12))
    True
    >>> fraud_probabilities(build_model("hoeffding_adaptive_tree"), vectors).round(2).tolist()
    [0.0, 0.0]
    """
    if isinstance(model, Hybrid):
        rows = _rows(model.online, vectors) if vectors else None
        if rows is None:
            online = fraud_probabilities(model.online, vectors, frames)
            return model.blend(online, model.batch_rows(vectors)) if model.blending else online
        online = model.online.predict_proba_rows(rows)  # one matrix for both parts
        if not model.blending:
            return online
        batch = model.batch_matrix(rows, model.online.features)
        return model.blend(online, batch if batch is not None else model.batch_rows(vectors))
    if isinstance(model, ScaledLogistic):
        if not model.features:  # nothing learned yet: one score for all
            return np.full(len(vectors), fraud_probability(model, {}))
        rows = _rows(model, vectors)
        if rows is not None:
            return model.predict_proba_rows(rows)
    linear = _scaled_logistic(model, vectors)
    if linear is not None:
        return linear
    many = getattr(model, "predict_proba_many", None) if frames else None
    if many is not None and vectors:
        import pandas as pd  # only here: the scoring path scores one at a time, without it

        try:
            frame = many(pd.DataFrame.from_records(vectors))
        except AttributeError:  # a pipeline whose last step scores one at a time
            pass
        else:
            if True not in frame:
                return np.zeros(len(vectors))
            return cast(np.ndarray, frame[True].to_numpy(dtype=float))
    return np.array([fraud_probability(model, v) for v in vectors], dtype=float)


def _scaled_logistic(
    model: base.Classifier, vectors: Sequence[Mapping[str, float]]
) -> np.ndarray | None:
    """``StandardScaler | LogisticRegression`` (the champion's shape) scored in numpy, as
    its ``predict_proba_one`` does for each vector (a feature of no variance yet scales to
    0), without building a pandas frame (River's ``predict_proba_many``: half the cost of
    a batch). None for any other model, or vectors without the same features.

    >>> from models.factory import build_model
    >>> model = build_model("plain_logistic_regression")
    >>> for i in range(50):
    ...     learn(model, {"x": float(i % 7), "y": 1.0, "z": i / 9}, i % 5 == 0)
    >>> vectors = [{"x": 3.0, "y": 1.0, "z": 2.5}, {"x": 6.0, "y": 2.0, "z": -1.0}]
    >>> one = [fraud_probability(model, v) for v in vectors]
    >>> bool(np.allclose(_scaled_logistic(model, vectors), one, rtol=1e-12, atol=0))
    True
    >>> _scaled_logistic(build_model("hoeffding_adaptive_tree"), vectors) is None
    True
    """
    river = _river_scaled_logistic(model)
    if not vectors or river is None:
        return None
    columns = list(vectors[0])
    if not columns or any(len(v) != len(columns) for v in vectors):
        return None
    get = itemgetter(*columns)
    try:
        rows = np.array([get(v) for v in vectors], dtype=float).reshape(len(vectors), -1)
    except KeyError:  # the same number of features, not the same ones
        return None
    parts = scaled_linear(model, columns)
    assert parts is not None
    means, variances, weights, intercept = parts
    stds = np.sqrt(variances)
    scaled = np.divide(rows - means, stds, out=np.zeros_like(rows), where=stds > 0)
    return cast(np.ndarray, river[1].loss.mean_func(scaled @ weights + intercept))


def scaled_linear(
    model: base.Classifier, names: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float] | None:
    """The running means and variances, the weights (of ``names``, 0 for one the model
    has not seen) and the intercept of a standard-scaled logistic regression: the
    champion's :class:`~models.linear.ScaledLogistic` or River's pipeline of that shape.
    None for any other model.

    Parameters
    ----------
    model
        The model.
    names
        The features whose means, variances and weights are returned, in that order.
    """
    if isinstance(model, ScaledLogistic):
        index = {name: i for i, name in enumerate(model.features)}
        at = [index.get(n, -1) for n in names]

        def pick(values: np.ndarray) -> np.ndarray:
            return np.array([values[i] if i >= 0 else 0.0 for i in at])

        return pick(model.means), pick(model.vars), pick(model.weights), model.intercept
    river = _river_scaled_logistic(model)
    if river is None:
        return None
    scaler, linear = river
    return (
        np.array([scaler.means.get(n, 0.0) for n in names]),
        np.array([scaler.vars.get(n, 0.0) for n in names]),
        np.array([linear._weights.get(n, 0.0) for n in names]),
        float(linear.intercept),
    )


def _river_scaled_logistic(model: base.Classifier) -> tuple[Any, Any] | None:
    """(scaler, regression) of River's ``StandardScaler | LogisticRegression``, else None."""
    if not isinstance(model, compose.Pipeline) or len(model.steps) != 2:
        return None
    scaler, linear = model.steps.values()
    if (
        type(scaler) is not preprocessing.StandardScaler
        or scaler.window_size is not None
        or not scaler.with_std
        or type(linear) is not linear_model.LogisticRegression
    ):
        return None
    return scaler, linear


def learn(
    model: base.Classifier,
    features: Mapping[str, float],
    is_fraud: bool,
    scored_at: float | None = None,
    known_at: float | None = None,
) -> None:
    """Teach ``model`` that ``features`` were (or were not) a fraud: a label that arrived
    at ``known_at`` for a transaction of ``scored_at`` (a model that waits for its
    transactions to mature uses the times; the others learn it at once).

    Parameters
    ----------
    model
        The model, taught in place.
    features
        The feature vector the transaction was scored with.
    is_fraud
        The label.
    scored_at
        The transaction's event time (seconds; None: unknown).
    known_at
        When the label arrived (event time, seconds; None: unknown).
    """
    if isinstance(model, ScaledLogistic | Hybrid):
        model.learn_one(
            cast(_RiverFeatures, features), is_fraud, scored_at=scored_at, known_at=known_at
        )
        return
    if isinstance(model, BatchRetrained):
        model.learn_one(cast(_RiverFeatures, features), is_fraud, known_at=known_at)
        return
    model.learn_one(cast(_RiverFeatures, features), is_fraud)


def learn_in_order(
    model: base.Classifier,
    vectors: Sequence[Mapping[str, float]],
    frauds: Sequence[bool],
    scored_at: Sequence[float | None] | None = None,
    known_at: Sequence[float | None] | None = None,
) -> None:
    """:func:`learn` each vector in turn (with its times, if given), in one call where the
    model has one (the same model as one label at a time, to the bit).

    Parameters
    ----------
    model
        The model, taught in place.
    vectors, frauds
        The feature vectors and their labels, in the order they are learned.
    scored_at, known_at
        Each label's transaction time and arrival (event time, seconds), as for
        :func:`learn` (None: no times).

    Examples
    --------
    >>> from models.factory import build_model
    >>> one, many = build_model("logistic_regression"), build_model("logistic_regression")
    >>> vectors = [{"x": float(i % 7), "y": i / 3} for i in range(30)]
    >>> frauds = [i % 7 == 6 for i in range(30)]
    >>> for v, f in zip(vectors, frauds):
    ...     learn(one, v, f)
    >>> learn_in_order(many, vectors, frauds)
    >>> one.predict_proba_one(vectors[6]) == many.predict_proba_one(vectors[6])
    True
    """
    scored = list(scored_at) if scored_at is not None else [None] * len(vectors)
    known = list(known_at) if known_at is not None else [None] * len(vectors)
    if isinstance(model, Hybrid):
        learn_in_order(model.online, vectors, frauds, scored, known)
        for features, is_fraud, arrived in zip(vectors, frauds, known, strict=True):
            model.batch.learn_one(cast(_RiverFeatures, features), is_fraud, known_at=arrived)
        return
    start = 0
    if isinstance(model, ScaledLogistic) and vectors:
        if not model.features:  # the first vector names the features
            learn(model, vectors[0], frauds[0], scored[0], known[0])
            start = 1
        rows = _rows(model, vectors[start:])
        if rows is not None:
            model.learn_rows(rows, frauds[start:], scored[start:], known[start:])
            return
    for features, is_fraud, at, arrived in zip(
        vectors[start:], frauds[start:], scored[start:], known[start:], strict=True
    ):
        learn(model, features, is_fraud, at, arrived)


def _rows(model: ScaledLogistic, vectors: Sequence[Mapping[str, float]]) -> np.ndarray | None:
    """``vectors`` as the model's matrix, or None unless each holds exactly its features."""
    width = len(model.features)
    if not width or any(len(v) != width for v in vectors):
        return None
    try:
        return model.rows(vectors)
    except KeyError:
        return None
