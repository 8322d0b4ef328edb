"""Promotion needs a paired test: equal models are rarely promoted, a better one is."""

from __future__ import annotations

import numpy as np

from models.significance import paired_bootstrap_ap
from stream.runtime.response import ahead


def _pairs(seed: int, n: int, challenger_noise: float) -> list[tuple[float, float, bool]]:
    rng = np.random.default_rng(seed)
    truth = rng.random(n) < 0.02
    signal = truth * 1.0
    champion = signal + rng.normal(0, 0.8, n)
    challenger = signal + rng.normal(0, challenger_noise, n)
    return list(zip(champion.tolist(), challenger.tolist(), truth.tolist(), strict=True))


def test_an_equally_good_challenger_is_promoted_at_most_at_the_test_level() -> None:
    """20 seeds of a challenger as good as the champion: with no margin, only the paired
    test stands between chance and a promotion."""
    promoted = sum(ahead(_pairs(seed, 2000, 0.8), 2000, 0.0, 0.05)[0] for seed in range(20))
    assert promoted <= 2


def test_a_better_challenger_is_promoted_and_the_p_value_says_why() -> None:
    better, ours, theirs, p = ahead(_pairs(7, 2000, 0.3), 2000, 0.05, 0.05)
    assert better and theirs > ours + 0.05 and p < 0.01
    pairs = _pairs(7, 2000, 0.3)
    champion, challenger, truth = (np.array(column) for column in zip(*pairs, strict=True))
    assert paired_bootstrap_ap(challenger, champion, truth) > 0.99  # the other way round


def test_a_promotion_waits_for_the_stated_minimum_sample() -> None:
    assert ahead(_pairs(7, 500, 0.3), 2000, 0.05, 0.05)[0] is False
