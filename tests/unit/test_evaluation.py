"""Prequential metrics equal direct computations on the same recorded scores."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, roc_auc_score

from models.evaluation import (
    Prequential,
    average_precision,
    card_precision_at_k,
    expected_cost,
    roc_auc,
)

scored = st.lists(
    st.tuples(st.sampled_from([0.0, 0.1, 0.2, 0.5, 0.7, 0.9, 1.0]), st.booleans()),
    min_size=2,
    max_size=60,
)


def brute_auc(pairs: list[tuple[float, bool]]) -> float:
    pos = [s for s, y in pairs if y]
    neg = [s for s, y in pairs if not y]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def brute_ap(pairs: list[tuple[float, bool]]) -> float:
    positives = sum(y for _, y in pairs)
    total, last_recall = 0.0, 0.0
    for threshold in sorted({s for s, _ in pairs}, reverse=True):
        flagged = [y for s, y in pairs if s >= threshold]
        recall = sum(flagged) / positives
        total += (recall - last_recall) * sum(flagged) / len(flagged)
        last_recall = recall
    return total


@settings(max_examples=300, deadline=None)
@given(scored)
def test_auc_and_average_precision_equal_their_definitions(pairs: list[tuple[float, bool]]) -> None:
    scores = np.array([s for s, _ in pairs])
    truth = np.array([int(y) for _, y in pairs])
    order = np.argsort(scores, kind="stable")  # the report sorts once for both
    if 0 < truth.sum() < len(truth):
        assert math.isclose(roc_auc(scores, truth), brute_auc(pairs), abs_tol=1e-12)
        assert roc_auc(scores, truth, order) == roc_auc(scores, truth)
    if truth.sum() > 0:
        assert math.isclose(average_precision(scores, truth), brute_ap(pairs), abs_tol=1e-12)
        assert average_precision(scores, truth, order) == average_precision(scores, truth)
    else:
        assert math.isnan(average_precision(scores, truth))


def test_card_precision_at_k_counts_cards_per_day() -> None:
    day = 86400.0
    scores = np.array([0.9, 0.8, 0.1, 0.7, 0.95, 0.2])
    truth = np.array([1, 0, 0, 0, 0, 1])
    cards = np.array(["a", "b", "a", "c", "a", "b"], dtype=object)
    times = np.array([0.0, 10.0, 20.0, 30.0, day + 1, day + 2])
    # day 0: top-2 cards by best score a (0.9, fraud), b (0.8, no) -> 1/2
    # day 1: a (0.95, no), b (0.2, fraud) -> 1/2
    assert card_precision_at_k(scores, truth, cards, times, k=2) == 0.5
    assert card_precision_at_k(scores, truth, cards, times, k=1) == 0.5


def test_expected_cost_weighs_misses_and_false_alarms() -> None:
    scores = np.array([0.9, 0.2, 0.6, 0.1])
    truth = np.array([1, 1, 0, 0])
    assert expected_cost(scores, truth, 0.5, missed_fraud=100, false_alarm=5) == (100 + 5) / 4


def test_the_report_has_window_and_since_start_views() -> None:
    """Checked against scikit-learn on the scores and labels as they were recorded."""
    rng = np.random.default_rng(0)
    metrics = Prequential(window=100, threshold=0.5)
    scores, truth = [], []
    for i in range(400):
        fraud = bool(rng.random() < 0.1)
        score = float(np.clip(rng.normal(0.7 if fraud else 0.3, 0.2), 0, 1))
        metrics.record(score, fraud, f"c{i % 50}", i * 600.0, i * 600.0 + 86400 * (1 + i % 3))
        scores.append(score)
        truth.append(fraud)
    report = metrics.report()
    assert report["roc_auc_all"] == pytest.approx(roc_auc_score(truth, scores), abs=1e-12)
    assert report["average_precision_window"] == pytest.approx(
        average_precision_score(truth[-100:], scores[-100:]), abs=1e-12
    )
    assert report["label_delay_p50_days"] == 2.0 and report["labels"] == 400
    assert 0.5 < report["roc_auc_all"] <= 1.0
