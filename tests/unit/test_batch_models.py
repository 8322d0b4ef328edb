"""Batch-retrained challengers: refit on the kept vectors, served as read-only copies."""

from __future__ import annotations

import copy
import pickle
import random

import numpy as np
import pytest

from models.batch import BatchRetrained
from models.evaluation import average_precision
from models.factory import build_model, fraud_probability, learn


@pytest.mark.parametrize("name", ["batch_logistic_regression", "batch_gradient_boosting"])
def test_a_batch_model_ranks_fraud_after_its_first_refit_and_pickles(name: str) -> None:
    rnd = random.Random(4)
    model = build_model(name)
    assert isinstance(model, BatchRetrained)
    model.retrain_every = 2000

    def draw() -> tuple[dict[str, float], bool]:
        fraud = rnd.random() < 0.05
        return {"amount": rnd.gauss(3.0 if fraud else 0.0, 1.0), "noise": rnd.random()}, fraud

    before = fraud_probability(model, {"amount": 3.0, "noise": 0.5})
    for _ in range(4000):
        x, y = draw()
        learn(model, x, y)
    assert model.fits == 2
    test = [draw() for _ in range(600)]
    scores = np.array([fraud_probability(model, x) for x, _ in test])
    truth = np.array([y for _, y in test])
    assert average_precision(scores, truth) > 0.6
    assert before == pytest.approx(0.0)  # the base rate before any label
    served = copy.deepcopy(model)
    assert served.rows == [] and len(model.rows) == 4000
    again = pickle.loads(pickle.dumps(served))
    assert fraud_probability(again, test[0][0]) == pytest.approx(scores[0])
