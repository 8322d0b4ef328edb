"""The model zoo: named River pipelines, built fresh on demand.

Fraud is about 1% of traffic, so every model handles the imbalance on purpose:

- ``logistic_regression``: standard-scaled inputs, Adam (0.0005), log loss
  with the fraud class weighted :data:`POSITIVE_WEIGHT` times, each label
  learned no sooner than :data:`LEARN_AFTER_DAYS` after its transaction (a
  chargeback that comes sooner waits: docs/models.md, "Learning at
  maturity"). River's ``StandardScaler | LogisticRegression`` of those
  settings, kept in arrays (:class:`models.linear.ScaledLogistic`): the same
  updates, a quarter of the cost per label.
- ``logistic_regression_on_arrival``: the same model learning each label as it
  comes, with Adam at 0.001 (docs/models.md).
- ``plain_logistic_regression``: River's textbook ``StandardScaler |
  LogisticRegression()`` (SGD 0.01, no class weight), the baseline a public
  benchmark measured the champion against.
- ``hoeffding_adaptive_tree``: splits allowed however pure a leaf is
  (``max_share_to_split=1.0``; River's default 0.99 never splits at 1% fraud,
  so the tree would score the base rate), ADWIN-based subtree replacement.
- ``adaptive_random_forest``: 10 Hoeffding trees with ADWIN drift detectors.
- ``aggregated_mondrian_forest``: 10 Mondrian trees with aggregation.
- ``batch_logistic_regression`` / ``batch_gradient_boosting``: scikit-learn
  models refitted every 10,000 labels on the last 200,000 stored vectors
  (:mod:`models.batch`), the batch baseline the online champion must beat.
- ``hybrid_gradient_boosting``: ``logistic_regression`` and
  ``batch_gradient_boosting`` (refitted at most every 3 days, on every fraud
  and 50,000 genuine rows) learning the same labels, scoring with the
  mean of their log-odds once the batch fit has seen 300 frauds
  (:mod:`models.hybrid`; docs/models.md, "A hybrid champion").
- ``<model>+undersample``: any of them behind a random under-sampler that
  learns from a 20/80 fraud/genuine mix (the genuine stream thinned, frauds
  all kept); scores are then over-confident, ranking is what counts.

Examples
--------
>>> model = build_model("logistic_regression")
>>> round(model.predict_proba_one({"x": 1.0})[True], 2)
0.5
>>> sorted(MODELS)[:2]
['adaptive_random_forest', 'aggregated_mondrian_forest']
>>> type(build_model("hoeffding_adaptive_tree+undersample")).__name__
'RandomUnderSampler'
>>> build_model("nope")
Traceback (most recent call last):
...
models.errors.UnknownModelError: unknown model 'nope'; known: adaptive_random_forest, ...
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

from river import base, forest, imblearn, linear_model, preprocessing, tree

from models.batch import BatchRetrained
from models.errors import UnknownModelError
from models.hybrid import Hybrid
from models.linear import ScaledLogistic

#: How much more a fraud label weighs than a genuine one in the logistic loss.
POSITIVE_WEIGHT = 5.0
#: The champion learns a label no sooner than this many days after its transaction: when
#: genuine labels come (the transaction matures), so both classes teach it at the same age.
LEARN_AFTER_DAYS = 7.0
#: The online model's weight in the hybrid's blend of log-odds (the batch model's: the rest).
HYBRID_ONLINE_WEIGHT = 0.5
#: ... once the batch model's fit learned from this many frauds (before: the online one alone).
HYBRID_MIN_FRAUDS = 300
#: Its batch model refits every 10,000 labels but no sooner than 3 days of event time after
#: the last fit (at 1,000 customers 10,000 labels are 4 days: the same fits; at a large
#: stream's volume, a fit every 3 days and not every few hours) ...
HYBRID_MIN_DAYS = 3.0
#: ... on every fraud and at most 50,000 genuine rows (a quarter of the cost of 200,000;
#: on 4 scorecards the same AP within 0.003).
HYBRID_MAX_GENUINE = 50_000
#: The class mix an under-sampled model learns from.
UNDERSAMPLED = {False: 0.8, True: 0.2}
SEED = 42


def _logistic_regression() -> base.Classifier:
    return ScaledLogistic(
        lr=0.0005,
        optimizer="adam",
        weight_pos=POSITIVE_WEIGHT,
        l2=1e-5,
        hold=LEARN_AFTER_DAYS * 86400,
    )


def _logistic_regression_on_arrival() -> base.Classifier:
    return ScaledLogistic(lr=0.001, optimizer="adam", weight_pos=POSITIVE_WEIGHT, l2=1e-5)


def _plain_logistic_regression() -> base.Classifier:
    """River's textbook online logistic regression: SGD 0.01, log loss, no class weight."""
    return preprocessing.StandardScaler() | linear_model.LogisticRegression()  # type: ignore[return-value]


def _batch_logistic_regression() -> base.Classifier:
    return BatchRetrained("logistic_regression")


def _batch_gradient_boosting() -> base.Classifier:
    return BatchRetrained("gradient_boosting")


def _hybrid_gradient_boosting() -> base.Classifier:
    batch = BatchRetrained(
        "gradient_boosting", min_days=HYBRID_MIN_DAYS, max_genuine=HYBRID_MAX_GENUINE
    )
    return Hybrid(
        cast(ScaledLogistic, _logistic_regression()),
        batch,
        online_weight=HYBRID_ONLINE_WEIGHT,
        min_frauds=HYBRID_MIN_FRAUDS,
    )


def _hoeffding_adaptive_tree() -> base.Classifier:
    return tree.HoeffdingAdaptiveTreeClassifier(
        grace_period=100, max_share_to_split=1.0, leaf_prediction="nba", seed=SEED
    )


def _adaptive_random_forest() -> base.Classifier:
    return forest.ARFClassifier(n_models=10, max_share_to_split=1.0, seed=SEED)


def _aggregated_mondrian_forest() -> base.Classifier:
    return forest.AMFClassifier(n_estimators=10, use_aggregation=True, dirichlet=0.5, seed=SEED)


MODELS: dict[str, Callable[[], base.Classifier]] = {
    "logistic_regression": _logistic_regression,
    "logistic_regression_on_arrival": _logistic_regression_on_arrival,
    "plain_logistic_regression": _plain_logistic_regression,
    "hoeffding_adaptive_tree": _hoeffding_adaptive_tree,
    "adaptive_random_forest": _adaptive_random_forest,
    "aggregated_mondrian_forest": _aggregated_mondrian_forest,
    "batch_logistic_regression": _batch_logistic_regression,
    "batch_gradient_boosting": _batch_gradient_boosting,
    "hybrid_gradient_boosting": _hybrid_gradient_boosting,
}
UNDERSAMPLE = "+undersample"


def model_names() -> list[str]:
    """Every name :func:`build_model` accepts."""
    return [*MODELS, *(f"{name}{UNDERSAMPLE}" for name in MODELS)]


def build_model(name: str) -> base.Classifier:
    """A new, untrained model called ``name``.

    Parameters
    ----------
    name
        One of :data:`MODELS` (the zoo above), optionally with ``+undersample``.

    Returns
    -------
    river.base.Classifier
        The model; an unknown name raises :class:`UnknownModelError` listing the known ones.
    """
    base_name = name.removesuffix(UNDERSAMPLE)
    if base_name not in MODELS:
        known = ", ".join(sorted(MODELS))
        raise UnknownModelError(
            f"unknown model {name!r}; known: {known} (each also as <name>{UNDERSAMPLE})"
        )
    model = MODELS[base_name]()
    if name.endswith(UNDERSAMPLE):
        return imblearn.RandomUnderSampler(model, desired_dist=UNDERSAMPLED, seed=SEED)
    return model
