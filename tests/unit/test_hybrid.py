"""The hybrid model: an online logistic regression and a batch-refitted one, blended."""

from __future__ import annotations

import copy
import pickle
import random

import numpy as np
import pytest

from models.batch import BatchRetrained
from models.calls import fraud_probabilities, fraud_probability, learn, learn_in_order
from models.factory import HYBRID_ONLINE_WEIGHT, build_model
from models.hybrid import Hybrid
from models.linear import ScaledLogistic

DAY = 86400.0


def _stream(n: int, seed: int) -> list[tuple[dict[str, float], bool, float]]:
    """Vectors where fraud is a high amount at night (an interaction a linear model cannot
    draw alone), a transaction every 10 minutes."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        night, amount = float(rnd.random() < 0.3), rnd.gauss(0, 1)
        fraud = night == 1.0 and amount > 1.0 and rnd.random() < 0.8
        out.append(({"amount": amount, "night": night, "noise": rnd.random()}, fraud, i * 600.0))
    return out


def _small() -> Hybrid:
    return Hybrid(
        ScaledLogistic(lr=0.01, hold=DAY),
        BatchRetrained("gradient_boosting", retrain_every=1000),
        0.5,
    )


def test_the_zoo_builds_the_champion_and_gradient_boosting_blended_evenly() -> None:
    model = build_model("hybrid_gradient_boosting")
    assert isinstance(model, Hybrid) and model.online_weight == HYBRID_ONLINE_WEIGHT == 0.5
    assert model.min_frauds == 300
    assert model.online.hold == 7 * DAY and model.batch.kind == "gradient_boosting"
    assert (model.batch.min_days, model.batch.max_genuine) == (3.0, 50_000)
    with pytest.raises(ValueError, match="online_weight"):
        Hybrid(ScaledLogistic(), BatchRetrained(), 1.5)


def test_scores_blend_both_parts_and_batch_scoring_equals_one_at_a_time() -> None:
    model, rows = _small(), _stream(3000, 1)
    for x, y, at in rows[:2500]:  # each label half a day after its transaction: held
        learn(model, x, y, scored_at=at, known_at=at + DAY / 2)
    assert model.batch.fits == 2 and model.online.held > 0
    test = [x for x, _, _ in rows[2500:]]
    many = fraud_probabilities(model, test)
    one = np.array([fraud_probability(model, x) for x in test])
    assert np.allclose(many, one, rtol=1e-9, atol=0)
    online = fraud_probabilities(model.online, test)
    batch = model.batch.probabilities(
        np.array([[x[n] for n in model.batch.names or []] for x in test])
    )

    def logit(p: np.ndarray) -> np.ndarray:  # each part's scores clipped to 1e-9 first
        p = np.clip(p, 1e-9, 1 - 1e-9)
        return np.asarray(np.log(p / (1 - p)))

    assert np.allclose(
        np.log(many / (1 - many)), 0.5 * logit(online) + 0.5 * logit(batch), atol=1e-6
    )


def test_the_blend_ranks_better_than_either_part_where_they_see_different_things() -> None:
    """The linear part cannot draw "high amount at night"; the trees can; together at
    least as good as the better one, on data neither learned from."""
    from sklearn.metrics import average_precision_score

    model, rows = _small(), _stream(6000, 2)
    learn_in_order(model, [x for x, _, _ in rows[:5000]], [y for _, y, _ in rows[:5000]])
    test = rows[5000:]
    truth = [y for _, y, _ in test]
    vectors = [x for x, _, _ in test]
    ap = {
        name: average_precision_score(truth, fraud_probabilities(part, vectors))
        for name, part in (("online", model.online), ("batch", model.batch), ("hybrid", model))
    }
    assert ap["hybrid"] >= max(ap["online"], ap["batch"]) - 0.02, ap
    assert ap["hybrid"] > ap["online"] + 0.05, ap


def test_the_batch_model_takes_part_once_its_fit_has_seen_enough_frauds() -> None:
    model = Hybrid(
        ScaledLogistic(lr=0.01), BatchRetrained("gradient_boosting", retrain_every=500), 0.5, 100
    )
    rows = _stream(3000, 4)
    probe = [x for x, _, _ in rows[:20]]
    for i, (x, y, _) in enumerate(rows):
        learn(model, x, y)
        if model.batch.fits == 1 and i % 500 == 499:
            assert model.batch.fitted_frauds < 100 and not model.blending
            assert np.array_equal(
                fraud_probabilities(model, probe), fraud_probabilities(model.online, probe)
            )
    assert model.blending and model.batch.fitted_frauds >= 100
    assert not np.allclose(
        fraud_probabilities(model, probe), fraud_probabilities(model.online, probe)
    )


def test_learning_in_order_equals_one_by_one_and_a_snapshot_scores_alike() -> None:
    rows = _stream(2500, 3)
    one, many = _small(), _small()
    for x, y, at in rows:
        learn(one, x, y, scored_at=at, known_at=at + DAY / 2)
    learn_in_order(
        many,
        [x for x, _, _ in rows],
        [y for _, y, _ in rows],
        [at for _, _, at in rows],
        [at + DAY / 2 for _, _, at in rows],
    )
    probe = [x for x, _, _ in rows[-50:]]
    assert np.array_equal(fraud_probabilities(one, probe), fraud_probabilities(many, probe))
    for snapshot in (copy.deepcopy(one), pickle.loads(pickle.dumps(one))):
        assert snapshot.batch.held == 0  # it scores with the fit, not the kept rows
        assert np.allclose(fraud_probabilities(snapshot, probe), fraud_probabilities(one, probe))


def test_the_worker_and_the_embedded_run_default_to_the_same_champion() -> None:
    from stream.scorecard.options import EmbeddedOptions
    from stream.settings import ModelSettings

    assert ModelSettings().name == EmbeddedOptions().model == "hybrid_gradient_boosting"
