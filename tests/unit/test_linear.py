"""The champion's array logistic regression against River's pipeline it replaces, on the
vectors of a simulated stream (the stream's own feature code), labels in arrival order."""

from __future__ import annotations

import asyncio
import copy
import pickle
from collections.abc import Hashable
from typing import Any, cast

import numpy as np
import pytest
from river import linear_model, optim, preprocessing

from features.events import Label, Transaction
from models.calls import fraud_probabilities, learn_in_order
from models.factory import POSITIVE_WEIGHT, build_model
from models.linear import ScaledLogistic
from producers.scenario import load_scenario, run_scenario
from stream.offline import replay_features
from stream.sources import events_from_frames

Labelled = tuple[list[dict[str, float]], list[bool], list[float], list[float]]


def as_x(vector: dict[str, float]) -> dict[Hashable, Any]:
    """The same vector, typed as River's ``learn_one`` takes it (``dict`` keys are invariant)."""
    return cast("dict[Hashable, Any]", vector)


@pytest.fixture(scope="module")
def labelled() -> Labelled:
    """Each label's stored vector, truth, transaction time and arrival, in the order the
    labels arrive."""
    simulation, _ = run_scenario(load_scenario("baseline"), days=12, customers=150)
    events = list(events_from_frames(simulation.transactions, simulation.labels))
    records = asyncio.run(replay_features(e for e in events if isinstance(e, Transaction)))
    vectors, truth, scored, known = [], [], [], []
    for event in events:
        record = records.get(event.txn_id) if isinstance(event, Label) else None
        if isinstance(event, Label) and record is not None:
            vectors.append(record.features)
            truth.append(event.is_fraud)
            scored.append(record.event_time)
            known.append(event.event_time)
    assert len(vectors) > 4_000 and 0 < sum(truth) < len(truth)
    return vectors, truth, scored, known


def test_it_learns_what_rivers_scaled_logistic_regression_learns(labelled: Labelled) -> None:
    vectors, truth, _, _ = labelled
    ours = build_model("logistic_regression")
    assert isinstance(ours, ScaledLogistic)
    river = preprocessing.StandardScaler() | linear_model.LogisticRegression(
        optimizer=optim.Adam(ours.lr),
        loss=optim.losses.Log(weight_pos=POSITIVE_WEIGHT, weight_neg=1.0),
        l2=1e-5,
    )
    for x, y in zip(vectors, truth, strict=True):
        river.learn_one(x, y)
        ours.learn_one(as_x(x), y)
    theirs = np.array([river.predict_proba_one(x)[True] for x in vectors[-2000:]])
    mine = fraud_probabilities(ours, vectors[-2000:])
    # the same arithmetic but for the order of a dot product's sum
    np.testing.assert_allclose(mine, theirs, rtol=1e-9, atol=1e-12)
    assert mine.std() > 0.01  # it did learn something to compare
    weights = river["LogisticRegression"].weights
    np.testing.assert_allclose(
        ours.weights, [weights[f] for f in ours.features], rtol=1e-9, atol=1e-15
    )


def test_in_batches_it_is_the_same_model_to_the_bit_and_it_pickles(labelled: Labelled) -> None:
    vectors, truth, _, _ = labelled
    one, batched = build_model("logistic_regression"), build_model("logistic_regression")
    for x, y in zip(vectors, truth, strict=True):
        learn_in_order(one, [x], [y])
    for start in range(0, len(vectors), 97):
        learn_in_order(batched, vectors[start : start + 97], truth[start : start + 97])
    assert isinstance(one, ScaledLogistic) and isinstance(batched, ScaledLogistic)
    assert one.steps == batched.steps == len(vectors)
    for name in ("counts", "means", "vars", "weights", "_m", "_v"):
        assert np.array_equal(getattr(one, name), getattr(batched, name)), name
    assert one.intercept == batched.intercept
    again = pickle.loads(pickle.dumps(batched))
    assert again.predict_proba_one(vectors[7]) == batched.predict_proba_one(as_x(vectors[7]))
    learn_in_order(again, vectors[:50], truth[:50])  # and learns on after loading
    assert again.steps == len(vectors) + 50


def test_held_labels_are_learned_as_if_each_came_when_its_transaction_matured(
    labelled: Labelled,
) -> None:
    vectors, truth, scored, known = labelled
    held = build_model("logistic_regression")
    assert isinstance(held, ScaledLogistic) and held.hold == 7 * 86400
    # the oracle: the same model without a hold, taught in the order of max(arrival,
    # transaction + 7 days), up to the last arrival (later ones are still held)
    due = [max(k, s + held.hold) for s, k in zip(scored, known, strict=True)]
    order = sorted((d, i) for i, d in enumerate(due) if d <= known[-1])
    oracle = ScaledLogistic(lr=held.lr, weight_pos=held.weight_pos, l2=held.l2)
    for _, i in order:
        oracle.learn_one(as_x(vectors[i]), truth[i])
    most_held = 0
    for start in range(0, len(vectors), 97):  # in batches, as the learner teaches them
        end = start + 97
        learn_in_order(
            held, vectors[start:end], truth[start:end], scored[start:end], known[start:end]
        )
        most_held = max(most_held, held.held)
    frauds_early = sum(
        1 for t, s, k in zip(truth, scored, known, strict=True) if t and k < s + held.hold
    )
    assert frauds_early > 20 and most_held > 5  # chargebacks come before maturity
    assert held.held == len(vectors) - len(order)
    assert held.steps == oracle.steps == len(order)
    assert held.features == oracle.features
    np.testing.assert_allclose(held.weights, oracle.weights, rtol=1e-12, atol=1e-15)
    # a snapshot keeps the held labels (packed as arrays), and learns them when they fall
    # due exactly as the model it was taken from
    again = pickle.loads(pickle.dumps(held))
    assert again.held == held.held
    again.learn_one(vectors[0], truth[0], scored_at=known[-1], known_at=known[-1])
    assert again.held == held.held + 1  # the new one is held in turn
    later = known[-1] + held.hold  # a week on: the one held is due, and so is this one
    again.learn_one(vectors[0], truth[0], scored_at=known[-1], known_at=later)
    assert again.held == 0 and again.steps == held.steps + held.held + 2
    held.learn_one(as_x(vectors[0]), truth[0], scored_at=known[-1], known_at=known[-1])
    held.learn_one(as_x(vectors[0]), truth[0], scored_at=known[-1], known_at=later)
    assert held.steps == again.steps
    assert held.weights.tolist() == again.weights.tolist()
    assert held.intercept == again.intercept


def test_a_snapshot_that_kept_labels_one_by_one_loads_them() -> None:
    # snapshots published before the kept labels were packed hold the heap as it was
    old = ScaledLogistic(hold=10.0)
    old.learn_one({"a": 0.0, "b": 1.0}, False)
    for i in range(5):
        old.learn_one({"a": float(i), "b": 1.0}, i % 2 == 0, scored_at=float(i), known_at=1.0)
    state = dict(old.__dict__, _held=list(old._held))
    del state["_get"]
    restored = ScaledLogistic.__new__(ScaledLogistic)
    restored.__setstate__(state)
    serving = copy.deepcopy(old)  # what a scorer gets: the kept labels stay behind
    assert old.held == 5 and serving.held == 0
    assert serving.predict_proba_one({"a": 2.0, "b": 1.0}) == old.predict_proba_one(
        {"a": 2.0, "b": 1.0}
    )
    for model in (old, restored, serving):
        model.learn_one({"a": 9.0, "b": 0.0}, True, scored_at=20.0, known_at=30.0)
    assert restored.held == old.held == 0 and restored.steps == old.steps == 7
    assert restored.weights.tolist() == old.weights.tolist()
    assert serving.steps == 2  # its first label and this one: none of those kept


def test_a_snapshot_from_before_the_hold_loads_and_learns_at_once() -> None:
    old = ScaledLogistic()
    state = pickle.loads(pickle.dumps(old)).__dict__
    for name in ("hold", "_held", "_kept"):
        state.pop(name)
    restored = ScaledLogistic.__new__(ScaledLogistic)
    restored.__setstate__(state)
    restored.learn_one({"a": 1.0}, True, scored_at=0.0, known_at=1.0)
    assert restored.hold == 0.0 and restored.held == 0 and restored.steps == 1


def test_a_vector_with_other_features_is_learned_on_the_features_it_has() -> None:
    model = ScaledLogistic(lr=0.05)
    river = preprocessing.StandardScaler() | linear_model.LogisticRegression(
        optimizer=optim.Adam(0.05)
    )
    rows: list[tuple[dict[Hashable, Any], bool]] = [
        ({"a": 1.0, "b": 2.0}, True),
        ({"a": 3.0}, False),
        ({"b": 1.0, "c": 4.0}, True),
        ({"a": 2.0, "b": 0.5, "c": 1.0}, False),
    ] * 20
    for x, y in rows:
        model.learn_one(x, y)
        river.learn_one(x, y)
    for x, _ in rows[:4]:
        assert model.predict_proba_one(x)[True] == pytest.approx(
            river.predict_proba_one(x)[True], rel=1e-9
        )
    assert model.counts.tolist() == [60.0, 60.0, 40.0]
    with pytest.raises(ValueError, match="optimizer"):
        ScaledLogistic(optimizer="adagrad")
