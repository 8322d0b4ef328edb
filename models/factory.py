"""Named River pipelines, built fresh on demand.

Examples
--------
>>> model = build_model("logistic_regression")
>>> p = model.predict_proba_one({"x": 1.0})
>>> round(p[True], 2)
0.5
>>> build_model("nope")
Traceback (most recent call last):
...
models.errors.UnknownModelError: unknown model 'nope'; known: logistic_regression
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any, cast

from river import base, linear_model, optim, preprocessing

from models.errors import UnknownModelError


def _logistic_regression() -> base.Classifier:
    scaler = preprocessing.StandardScaler()
    return scaler | linear_model.LogisticRegression(optimizer=optim.SGD(0.05))  # type: ignore[return-value]


MODELS: dict[str, Callable[[], base.Classifier]] = {
    "logistic_regression": _logistic_regression,
}


def build_model(name: str) -> base.Classifier:
    """A new, untrained model called ``name``."""
    try:
        return MODELS[name]()
    except KeyError:
        known = ", ".join(sorted(MODELS))
        raise UnknownModelError(f"unknown model {name!r}; known: {known}") from None


def fraud_probability(model: base.Classifier, features: Mapping[str, float]) -> float:
    """The model's probability that ``features`` describe a fraud."""
    return float(model.predict_proba_one(cast(dict[Hashable, Any], features)).get(True, 0.0))


def learn(model: base.Classifier, features: Mapping[str, float], is_fraud: bool) -> None:
    """Teach ``model`` that ``features`` were (or were not) a fraud."""
    model.learn_one(cast(dict[Hashable, Any], features), is_fraud)
