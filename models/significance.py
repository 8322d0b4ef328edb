"""Is a challenger really better? A paired bootstrap on average precision.

Two models scored the same labelled transactions (the champion when they
happened, the challenger in shadow). Resampling those transactions with
replacement, and scoring both models on each resample, keeps the pairing:
the difference in AP comes from the models, not from which transactions
happened to be drawn. The one-sided p-value is the share of resamples in
which the challenger is not ahead. Frauds are rare, so a resample is drawn
stratified (frauds among frauds, genuine among genuine): every resample has
as many frauds as the sample.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> truth = rng.random(3000) < 0.05
>>> better = truth * 1.0 + rng.normal(0, 0.6, 3000)
>>> worse = truth * 1.0 + rng.normal(0, 1.2, 3000)
>>> round(paired_bootstrap_ap(worse, better, truth), 4)  # "better" is ahead: p small
0.002
>>> paired_bootstrap_ap(better, worse, truth)  # and the other way round
1.0
"""

from __future__ import annotations

import numpy as np

from models.evaluation import average_precision


def paired_bootstrap_ap(
    champion: np.ndarray,
    challenger: np.ndarray,
    truth: np.ndarray,
    resamples: int = 500,
    seed: int = 0,
) -> float:
    """One-sided p-value that ``challenger``'s AP is not above ``champion``'s, on the same
    transactions (``truth`` their labels); 1.0 when there is no fraud or no genuine.

    Parameters
    ----------
    champion, challenger
        Each model's scores of the same transactions, in the same order.
    truth
        Their labels (True: fraud).
    resamples
        How many stratified resamples are drawn.
    seed
        The resampling's seed.
    """
    truth = np.asarray(truth, dtype=bool)
    frauds, genuine = np.flatnonzero(truth), np.flatnonzero(~truth)
    if not len(frauds) or not len(genuine):
        return 1.0
    rng = np.random.default_rng(seed)
    not_ahead = 0
    for _ in range(resamples):
        pick = np.concatenate([rng.choice(frauds, len(frauds)), rng.choice(genuine, len(genuine))])
        y = truth[pick]
        not_ahead += average_precision(challenger[pick], y) <= average_precision(champion[pick], y)
    return (not_ahead + 1) / (resamples + 1)
