"""The arithmetic of a logistic regression, as River computes it: the sigmoid, the weighted
log loss's gradient with its limits, standard scaling with a zero where the spread is 0.

Examples
--------
>>> sigmoid(0.0), sigmoid(40.0), sigmoid(-40.0)
(0.5, 1.0, 0.0)
>>> log_loss_gradient(0.0, True, 5.0, 1.0, 1e12)  # a fraud scored 0.5: -5 x 0.5
-2.5
>>> standard_scaled(np.array([3.0, 7.0]), np.array([1.0, 7.0]), np.array([4.0, 0.0])).tolist()
[1.0, 0.0]
"""

from __future__ import annotations

import math
from typing import cast

import numpy as np

#: Beyond this margin the logistic loss's gradient is computed in its limit (as River does).
MARGIN = 18.0


def sigmoid(raw: float) -> float:
    """The probability of the raw score ``raw`` (0 and 1 beyond +-30)."""
    if raw < -30:
        return 0.0
    if raw > 30:
        return 1.0
    return 1.0 / (1.0 + math.exp(-raw))


def log_loss_gradient(
    raw: float, y: bool, weight_pos: float, weight_neg: float, clip: float
) -> float:
    """The weighted log loss's derivative at the raw score ``raw``, clipped to +-``clip``.

    Parameters
    ----------
    raw
        The raw score (the linear part, before the sigmoid).
    y
        The label: a fraud's loss is weighted by ``weight_pos``, a genuine one's by
        ``weight_neg``.
    weight_pos, weight_neg
        The weights of a fraud's and of a genuine label's loss.
    clip
        Bound on the gradient's size.
    """
    sign, weight = (1.0, weight_pos) if y else (-1.0, weight_neg)
    z = raw * sign
    if z > MARGIN:
        value = weight * math.exp(-z) * -sign
    elif z < -MARGIN:
        value = weight * -sign
    else:
        value = weight * -sign / (math.exp(z) + 1.0)
    return min(max(value, -clip), clip)


def standard_scaled(x: np.ndarray, means: np.ndarray, variances: np.ndarray) -> np.ndarray:
    """``(x - means) / sqrt(variances)``, 0 where a variance is 0 (as River's scaler).

    Parameters
    ----------
    x
        The values: a vector, or a matrix of rows, in the features' order.
    means, variances
        Each feature's running mean and variance.
    """
    return cast(
        np.ndarray,
        np.divide(
            x - means, np.sqrt(variances), out=np.zeros_like(x, dtype=float), where=variances > 0
        ),
    )
