"""Reason codes: the features that pushed one transaction's score up, from the model used.

For the champion's shape (:class:`models.linear.ScaledLogistic`, or River's
``StandardScaler | LogisticRegression`` of older snapshots) a feature's
contribution is exact: its weight times its standard-scaled value, in
log-odds; they sum, with the intercept, to the score's logit. For any other
model it is measured by occlusion: the score's logit minus the logit with
that feature set to 0, one model call per feature (46 calls: see
docs/performance.md for what that costs on the API).

Examples
--------
>>> from models.factory import build_model
>>> from models.calls import learn
>>> model = build_model("logistic_regression")
>>> for i in range(400):
...     learn(model, {"amount": float(i % 10), "night": float(i % 3 == 0)}, i % 10 == 9)
>>> top = reasons(model, {"amount": 9.0, "night": 0.0})
>>> [(r.feature, r.value) for r in top]
[('amount', 9.0)]
>>> parts = contributions(model, {"amount": 9.0, "night": 0.0})
>>> p = fraud_probabilities(model, [{"amount": 9.0, "night": 0.0}])[0]
>>> bool(np.isclose(sum(parts.values()) + model.intercept, np.log(p / (1 - p))))
True
>>> reasons(build_model("hoeffding_adaptive_tree"), {"amount": 9.0})  # it knows nothing yet
[]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

import numpy as np
from river import base

from models.calls import fraud_probabilities, scaled_linear


@dataclass(frozen=True, slots=True)
class Reason:
    """One feature that raised the score: its value and its share of the score's logit."""

    feature: str
    value: float
    contribution: float


def contributions(model: base.Classifier, features: Mapping[str, float]) -> dict[str, float]:
    """Each feature's contribution to the logit of ``model``'s fraud score (see above).

    Parameters
    ----------
    model
        The model that scores the transaction.
    features
        The transaction's feature vector.
    """
    names = list(features)
    values = np.array([features[n] for n in names], dtype=float)
    linear = scaled_linear(model, names)
    if linear is not None:
        means, variances, weights, _ = linear
        scaled = np.divide(
            values - means, np.sqrt(variances), out=np.zeros_like(values), where=variances > 0
        )
        return dict(zip(names, (scaled * weights).tolist(), strict=True))
    occluded = [dict(features) for _ in names]
    for vector, name in zip(occluded, names, strict=True):
        vector[name] = 0.0
    scores = fraud_probabilities(model, [dict(features), *occluded], frames=False)
    logits = _logit(scores)
    return dict(zip(names, (logits[0] - logits[1:]).tolist(), strict=True))


def reasons(model: base.Classifier, features: Mapping[str, float], top: int = 5) -> list[Reason]:
    """The ``top`` features with the largest positive contributions, largest first.

    Parameters
    ----------
    model
        The model that scores the transaction.
    features
        The transaction's feature vector.
    top
        How many features at most.
    """
    ranked = sorted(
        ((c, n) for n, c in contributions(model, features).items() if c > 0), reverse=True
    )
    return [Reason(n, float(features[n]), c) for c, n in ranked[:top]]


def _logit(p: np.ndarray) -> np.ndarray:
    clipped = np.clip(p, 1e-12, 1 - 1e-12)
    return cast(np.ndarray, np.log(clipped / (1 - clipped)))
