"""The labels :class:`~models.linear.ScaledLogistic` keeps until their transaction is old
enough, as a pickle holds them: the full rows in one matrix (fast to pickle and load), the
others as they are.

With ``hold`` (seconds), a label given with its transaction's time
(``scored_at``) and its own arrival (``known_at``) is learned no sooner than
``hold`` after the transaction: one that comes earlier is kept, and learned
when a later label's arrival passes that time
(:meth:`models.linear.ScaledLogistic.learn_one`). Chargebacks come in about 2
days and genuine labels when the transaction matures, at 7: learned as they
come, every change of the traffic is first taught by its frauds alone, and the
model learns that the new traffic is fraud (docs/models.md, "Learning at
maturity").
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np


def pack_held(
    held: Sequence[tuple[float, int, np.ndarray | dict[Hashable, float], bool]], width: int
) -> dict[str, Any]:
    """Kept labels as arrays: those whose vector is a full row (``width`` values) in one
    matrix, the others (vectors met before features were added) as they are.

    Parameters
    ----------
    held
        The kept labels: (due time, order, vector, truth), a vector being a row of the
        model's features or a dict.
    width
        The model's number of features: the length of a full row.

    Examples
    --------
    >>> held = [(5.0, 1, np.array([1.0, 2.0]), True), (6.0, 2, {"a": 1.0}, False)]
    >>> [(due, order, truth) for due, order, _, truth in unpack_held(pack_held(held, 2))]
    [(5.0, 1, True), (6.0, 2, False)]
    """
    rows = [h for h in held if isinstance(h[2], np.ndarray) and len(h[2]) == width]
    return {
        "due": np.array([h[0] for h in rows], dtype=float),
        "order": np.array([h[1] for h in rows], dtype=np.int64),
        "truth": np.array([h[3] for h in rows], dtype=bool),
        "rows": np.array([h[2] for h in rows], dtype=float).reshape(len(rows), width),
        "other": [h for h in held if not (isinstance(h[2], np.ndarray) and len(h[2]) == width)],
    }


def unpack_held(packed: dict[str, Any]) -> list[tuple[float, int, Any, bool]]:
    """The heap :func:`pack_held` packed."""
    held = [
        (float(due), int(order), row, bool(truth))
        for due, order, row, truth in zip(
            packed["due"], packed["order"], packed["rows"], packed["truth"], strict=True
        )
    ]
    held += packed["other"]
    heapq.heapify(held)
    return held
