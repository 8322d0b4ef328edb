"""The champion's array logistic regression against River's pipeline it replaces, on the
vectors of a simulated stream (the stream's own feature code), labels in arrival order."""

from __future__ import annotations

import asyncio
import pickle

import numpy as np
import pytest
from river import linear_model, optim, preprocessing

from features.events import Label, Transaction
from models.factory import POSITIVE_WEIGHT, build_model, fraud_probabilities, learn_in_order
from models.linear import ScaledLogistic
from producers.scenario import load_scenario, run_scenario
from stream.embedded import events_from_frames
from stream.replay import replay_features


@pytest.fixture(scope="module")
def labelled() -> tuple[list[dict[str, float]], list[bool]]:
    """Each label's stored vector and truth, in the order the labels arrive."""
    simulation, _ = run_scenario(load_scenario("baseline"), days=12, customers=150)
    events = list(events_from_frames(simulation.transactions, simulation.labels))
    records = asyncio.run(replay_features(e for e in events if isinstance(e, Transaction)))
    vectors, truth = [], []
    for event in events:
        if isinstance(event, Label) and records.get(event.txn_id) is not None:
            vectors.append(records[event.txn_id].features)  # type: ignore[union-attr]
            truth.append(event.is_fraud)
    assert len(vectors) > 4_000 and 0 < sum(truth) < len(truth)
    return vectors, truth


def test_it_learns_what_rivers_scaled_logistic_regression_learns(labelled) -> None:
    vectors, truth = labelled
    river = preprocessing.StandardScaler() | linear_model.LogisticRegression(
        optimizer=optim.Adam(0.001),
        loss=optim.losses.Log(weight_pos=POSITIVE_WEIGHT, weight_neg=1.0), l2=1e-5)
    ours = build_model("logistic_regression")
    assert isinstance(ours, ScaledLogistic)
    for x, y in zip(vectors, truth, strict=True):
        river.learn_one(x, y)
        ours.learn_one(x, y)
    theirs = np.array([river.predict_proba_one(x)[True] for x in vectors[-2000:]])
    mine = fraud_probabilities(ours, vectors[-2000:])
    # the same arithmetic but for the order of a dot product's sum
    np.testing.assert_allclose(mine, theirs, rtol=1e-9, atol=1e-12)
    assert mine.std() > 0.01  # it did learn something to compare
    weights = river["LogisticRegression"].weights
    np.testing.assert_allclose(ours.weights, [weights[f] for f in ours.features], rtol=1e-9,
                               atol=1e-15)


def test_in_batches_it_is_the_same_model_to_the_bit_and_it_pickles(labelled) -> None:
    vectors, truth = labelled
    one, batched = build_model("logistic_regression"), build_model("logistic_regression")
    for x, y in zip(vectors, truth, strict=True):
        learn_in_order(one, [x], [y])
    for start in range(0, len(vectors), 97):
        learn_in_order(batched, vectors[start:start + 97], truth[start:start + 97])
    assert isinstance(one, ScaledLogistic) and isinstance(batched, ScaledLogistic)
    assert one.steps == batched.steps == len(vectors)
    for name in ("counts", "means", "vars", "weights", "_m", "_v"):
        assert np.array_equal(getattr(one, name), getattr(batched, name)), name
    assert one.intercept == batched.intercept
    again = pickle.loads(pickle.dumps(batched))
    assert again.predict_proba_one(vectors[7]) == batched.predict_proba_one(vectors[7])
    learn_in_order(again, vectors[:50], truth[:50])  # and learns on after loading
    assert again.steps == len(vectors) + 50


def test_a_vector_with_other_features_is_learned_on_the_features_it_has() -> None:
    model = ScaledLogistic(lr=0.05)
    river = preprocessing.StandardScaler() | linear_model.LogisticRegression(
        optimizer=optim.Adam(0.05))
    rows = [({"a": 1.0, "b": 2.0}, True), ({"a": 3.0}, False), ({"b": 1.0, "c": 4.0}, True),
            ({"a": 2.0, "b": 0.5, "c": 1.0}, False)] * 20
    for x, y in rows:
        model.learn_one(x, y)
        river.learn_one(x, y)
    for x, _ in rows[:4]:
        assert model.predict_proba_one(x)[True] == pytest.approx(
            river.predict_proba_one(x)[True], rel=1e-9)
    assert model.counts.tolist() == [60.0, 60.0, 40.0]
    with pytest.raises(ValueError, match="optimizer"):
        ScaledLogistic(optimizer="adagrad")
