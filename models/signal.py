"""How much fraud signal each feature carries on its own.

For every feature: the share of transactions where it is not 0 (a feature
that is almost always 0 cannot help, whatever the model), and its
univariate average precision and ROC AUC: the feature's own value used as
the score, high values first or low values first, whichever ranks fraud
better (``direction``). The base rate (the fraud share) is the AP of a
feature with no signal.

Examples
--------
>>> import numpy as np
>>> truth = np.array([0, 0, 0, 1, 1])
>>> vectors = np.array([[0.0, 5.0], [0.0, 4.0], [0.0, 3.0], [1.0, 1.0], [0.0, 0.0]])
>>> s = feature_signal(vectors, truth, ["rare", "low_is_fraud"])
>>> low = s["low_is_fraud"]
>>> s["rare"]["nonzero_share"], low["direction"], low["average_precision"]
(0.2, 'low', 1.0)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from models.evaluation import average_precision, roc_auc


def feature_signal(
    vectors: np.ndarray, truth: np.ndarray, names: Sequence[str]
) -> dict[str, dict[str, float | str]]:
    """Per feature (a column of ``vectors``, rows matching ``truth``): non-zero share,
    univariate AP and ROC AUC in the better direction, and that direction.

    Parameters
    ----------
    vectors
        One row per transaction, one column per feature.
    truth
        Each row's label (1: fraud).
    names
        Each column's feature name.
    """
    out: dict[str, dict[str, float | str]] = {}
    for column, name in enumerate(names):
        x = vectors[:, column].astype(float)
        high, low = average_precision(x, truth), average_precision(-x, truth)
        direction, ap = ("high", high) if not high < low else ("low", low)
        auc = roc_auc(x if direction == "high" else -x, truth)
        out[name] = {
            "nonzero_share": float(np.mean(x != 0)) if len(x) else float("nan"),
            "average_precision": ap,
            "roc_auc": auc,
            "direction": direction,
        }
    return out
