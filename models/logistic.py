"""The arithmetic of a logistic regression, as River computes it: the sigmoid, the weighted
log loss's gradient with its limits, standard scaling with a zero where the spread is 0,
and Adam's step.

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


def adam_step(
    gradient: np.ndarray,
    weights: np.ndarray,
    m: np.ndarray,
    v: np.ndarray,
    step: int,
    lr: float,
    beta_1: float,
    beta_2: float,
    eps: float,
) -> None:
    """Move ``weights`` against ``gradient`` by Adam, bias-corrected as River's ``optim.Adam``;
    ``weights`` and the moments ``m`` and ``v`` are changed in place.

    Parameters
    ----------
    gradient
        The loss's gradient at ``weights``.
    weights
        The weights to move.
    m, v
        Adam's first and second moment estimates, one per weight.
    step
        The number of this step, from 1 (for the bias correction).
    lr
        The learning rate.
    beta_1, beta_2
        The moments' decay rates.
    eps
        Added to the second moment's root (no division by 0).

    Examples
    --------
    >>> w, m, v = np.zeros(2), np.zeros(2), np.zeros(2)
    >>> adam_step(np.array([1.0, -2.0]), w, m, v, 1, 0.1, 0.9, 0.999, 1e-8)
    >>> w.round(6).tolist()  # the first step moves each weight by lr against its sign
    [-0.1, 0.1]
    """
    rate = lr * (1 - beta_2**step) ** 0.5 / (1 - beta_1**step)
    m *= beta_1
    m += (1 - beta_1) * gradient
    v *= beta_2
    v += (1 - beta_2) * gradient**2
    weights -= rate * m / (np.sqrt(v) + eps)
