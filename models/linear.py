"""The champion's model: a standard-scaled online logistic regression kept in arrays.

:class:`ScaledLogistic` makes the updates River's
``preprocessing.StandardScaler() | linear_model.LogisticRegression(optimizer=
optim.Adam(lr), loss=optim.losses.Log(weight_pos, weight_neg), l2=l2)`` makes,
label by label and in the same order (the running mean and variance first,
then the gradient of the weighted log loss on the rescaled vector, the
intercept by plain SGD, the weights by Adam), but with its state in numpy
arrays instead of dictionaries. Equal to River's up to rounding (the order
of a dot product's sum); about five times cheaper per label, and
:meth:`ScaledLogistic.learn_rows` teaches a batch of vectors in order in one
call, each exactly as :meth:`ScaledLogistic.learn_one` would.

With ``hold`` (seconds), labels are learned at maturity (:mod:`models.held`).

Examples
--------
>>> model = ScaledLogistic(lr=0.1)
>>> for i in range(200):
...     model.learn_one({"amount": float(i % 10), "night": float(i % 2)}, i % 10 > 7)
>>> round(model.predict_proba_one({"amount": 9.0, "night": 1.0})[True], 2)
0.82
>>> round(model.predict_proba_one({"amount": 1.0, "night": 1.0})[True], 2)
0.07
>>> model.features
['amount', 'night']
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable, Mapping, Sequence
from operator import itemgetter
from typing import Any

import numpy as np
from river import base

from models.held import pack_held, unpack_held
from models.logistic import adam_step, log_loss_gradient, sigmoid, standard_scaled


class ScaledLogistic(base.Classifier):
    """Online logistic regression on standard-scaled inputs, with Adam or SGD.

    Parameters
    ----------
    lr
        Learning rate of the weights' optimizer.
    optimizer
        ``"adam"`` (bias-corrected, ``beta_1``, ``beta_2``, ``eps``) or ``"sgd"``.
    weight_pos, weight_neg
        Weight of a fraud's (a genuine label's) log loss.
    l2
        L2 penalty added to each weight's gradient.
    intercept_lr
        Learning rate of the intercept (plain SGD, as River's).
    beta_1, beta_2
        Adam's decay rates of its first and second moment estimates.
    eps
        Adam's term added to the denominator (no division by 0).
    clip_gradient
        Bound on the loss's gradient.
    hold
        Learn a label given with its times no sooner than this many seconds after its
        transaction (0: as it comes).

    Examples
    --------
    A feature met later joins the model; one missing from a vector is left
    untouched by that vector, as River's dictionaries do:

    >>> model = ScaledLogistic()
    >>> model.learn_one({"a": 1.0}, False)
    >>> model.learn_one({"a": 2.0, "b": 5.0}, True)
    >>> model.learn_one({"b": 3.0}, False)
    >>> model.features, model.counts.tolist()
    (['a', 'b'], [2.0, 2.0])
    """

    def __init__(
        self,
        lr: float = 0.001,
        optimizer: str = "adam",
        weight_pos: float = 1.0,
        weight_neg: float = 1.0,
        l2: float = 0.0,
        intercept_lr: float = 0.01,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        eps: float = 1e-8,
        clip_gradient: float = 1e12,
        hold: float = 0.0,
    ) -> None:
        if optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer: 'adam' or 'sgd', not {optimizer!r}")
        self.lr = lr
        self.optimizer = optimizer
        self.weight_pos = weight_pos
        self.weight_neg = weight_neg
        self.l2 = l2
        self.intercept_lr = intercept_lr
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.eps = eps
        self.clip_gradient = clip_gradient
        self.hold = hold
        #: Labels kept until their transaction is ``hold`` old: (due, order, vector, truth).
        self._held: list[tuple[float, int, np.ndarray | dict[Hashable, float], bool]] = []
        self._kept = 0
        self.features: list[Hashable] = []
        self._index: dict[Hashable, int] = {}
        self._get: Any = None  # itemgetter of the features, once there are any
        # per feature: the scaler's count, mean and variance, the weight, Adam's moments
        self.counts, self.means, self.vars = np.zeros(0), np.zeros(0), np.zeros(0)
        self.weights, self._m, self._v = np.zeros(0), np.zeros(0), np.zeros(0)
        self.intercept = 0.0
        self.steps = 0

    def __getstate__(self) -> dict[str, Any]:
        """The state to pickle (a published snapshot): the kept labels packed as arrays,
        one matrix instead of an array per label (700 kept labels: 5 ms to pickle one by
        one, a learner publishing every hundred labels)."""
        state = dict(self.__dict__)
        del state["_get"]  # an itemgetter does not pickle: rebuilt from the names
        state["_held"] = pack_held(self._held, len(self.features))
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = {"hold": 0.0, "_held": [], "_kept": 0, **state}  # snapshots from before
        if isinstance(state["_held"], dict):
            state["_held"] = unpack_held(state["_held"])
        self.__dict__.update(state)
        self._get = itemgetter(*self.features) if self.features else None

    def __deepcopy__(self, memo: dict[int, Any]) -> ScaledLogistic:
        """A copy that scores (what a published snapshot serves): the arrays copied, the
        kept labels left behind, as a scorer never learns them.

        >>> import copy
        >>> model = ScaledLogistic(hold=10.0)
        >>> model.learn_one({"a": 1.0}, True, scored_at=0.0, known_at=2.0)
        >>> model.held, copy.deepcopy(model).held
        (1, 0)
        """
        twin = object.__new__(ScaledLogistic)
        twin.__dict__.update(self.__dict__)  # (copy.copy would pack the kept labels)
        twin.features, twin._index = list(self.features), dict(self._index)
        for name in ("counts", "means", "vars", "weights", "_m", "_v"):
            setattr(twin, name, getattr(self, name).copy())
        twin._held = []
        return twin

    # -- vectors -----------------------------------------------------------------------

    def _grow(self, names: Sequence[Hashable]) -> None:
        for name in names:
            self._index[name] = len(self.features)
            self.features.append(name)
        extra = np.zeros(len(names))
        self.counts, self.means, self.vars, self.weights, self._m, self._v = (
            np.concatenate([a, extra])
            for a in (self.counts, self.means, self.vars, self.weights, self._m, self._v)
        )
        self._get = itemgetter(*self.features)

    def _full(self, x: Mapping[Hashable, float]) -> np.ndarray | None:
        """``x`` in the model's feature order, if it holds exactly the model's features."""
        if len(x) != len(self.features) or not self.features:
            return None
        try:
            return np.array(self._get(x), dtype=float).reshape(-1)
        except KeyError:
            return None

    def _sparse(self, x: Mapping[Hashable, float]) -> tuple[np.ndarray, np.ndarray]:
        """The positions of ``x``'s features (new ones added) and their values."""
        new = [name for name in x if name not in self._index]
        if new:
            self._grow(new)
        return (
            np.fromiter((self._index[name] for name in x), dtype=np.intp, count=len(x)),
            np.fromiter(x.values(), dtype=float, count=len(x)),
        )

    # -- learning ----------------------------------------------------------------------

    def learn_one(
        self,
        x: dict[Hashable, Any],
        y: Any,
        *,
        scored_at: float | None = None,
        known_at: float | None = None,
    ) -> None:
        """Learn ``x`` as ``y``; with both times and a ``hold``, first learn the kept labels
        that are due by ``known_at``, then learn this one or keep it until it is due.

        Parameters
        ----------
        x
            The feature vector (a new feature joins the model; one missing is left as it is).
        y
            The label (truthy: fraud).
        scored_at
            The transaction's event time (seconds).
        known_at
            When the label arrived (event time, seconds).

        Examples
        --------
        >>> model = ScaledLogistic(hold=10.0)
        >>> model.learn_one({"a": 1.0}, True, scored_at=0.0, known_at=2.0)  # kept until 10
        >>> model.held, model.steps
        (1, 0)
        >>> model.learn_one({"a": 2.0}, False, scored_at=0.0, known_at=11.0)  # both learned
        >>> model.held, model.steps, model.means.tolist()
        (0, 2, [1.5])
        """
        due = self._due(scored_at, known_at)
        if due is not None:
            row = self._full(x)
            self._keep(due, row if row is not None else dict(x), bool(y))
            return
        self._learn_dict(x, bool(y))

    def _learn_dict(self, x: Mapping[Hashable, Any], y: bool) -> None:
        row = self._full(x)
        if row is not None:
            self._learn(row, y)
        else:
            self._learn_at(*self._sparse(x), y)

    @property
    def held(self) -> int:
        """Labels kept until their transaction is ``hold`` old."""
        return len(self._held)

    def _due(self, scored_at: float | None, known_at: float | None) -> float | None:
        """With a hold and both times: first learn the kept labels due by ``known_at``,
        then when this label is due if it must wait (None: learn it now)."""
        if not self.hold or scored_at is None or known_at is None:
            return None
        self._release(known_at)
        due = scored_at + self.hold
        return due if known_at < due else None

    def _keep(self, due: float, vector: np.ndarray | dict[Hashable, float], y: bool) -> None:
        self._kept += 1
        heapq.heappush(self._held, (due, self._kept, vector, y))

    def _release(self, now: float) -> None:
        """Learn, in order, every kept label due at ``now``."""
        while self._held and self._held[0][0] <= now:
            _, _, vector, y = heapq.heappop(self._held)
            if isinstance(vector, np.ndarray) and len(vector) == len(self.features):
                self._learn(vector, y)
            elif isinstance(vector, np.ndarray):  # the model met new features since
                self._learn_dict(dict(zip(self.features, vector.tolist(), strict=False)), y)
            else:
                self._learn_dict(vector, y)

    def learn_rows(
        self,
        rows: np.ndarray,
        ys: Sequence[bool],
        scored_at: Sequence[float | None] | None = None,
        known_at: Sequence[float | None] | None = None,
    ) -> None:
        """Learn each row of ``rows`` (columns in :attr:`features` order) in turn, exactly
        as :meth:`learn_one` would (with each row's times, if given).

        Parameters
        ----------
        rows
            The vectors, one row each, columns in :attr:`features` order.
        ys
            Each row's label.
        scored_at, known_at
            Each row's transaction time and label arrival (event time, seconds), as for
            :meth:`learn_one` (None: every row learned at once).

        Examples
        --------
        >>> a, b = ScaledLogistic(), ScaledLogistic()
        >>> vectors = [{"x": float(i % 7), "y": i / 3} for i in range(40)]
        >>> for v in vectors:
        ...     a.learn_one(v, v["x"] > 4)
        >>> b.learn_one(vectors[0], False)
        >>> b.learn_rows(b.rows(vectors[1:]), [v["x"] > 4 for v in vectors[1:]])
        >>> bool((a.weights == b.weights).all()) and a.intercept == b.intercept
        True
        """
        if not self.hold or scored_at is None or known_at is None:
            for row, y in zip(rows, ys, strict=True):
                self._learn(row, bool(y))
            return
        for row, y, scored, known in zip(rows, ys, scored_at, known_at, strict=True):
            due = self._due(scored, known)
            if due is None:
                self._learn(row, bool(y))
            else:
                self._keep(due, row.copy(), bool(y))

    def rows(self, vectors: Sequence[Mapping[Any, float]]) -> np.ndarray:
        """``vectors`` as a matrix in :attr:`features` order (each must hold them all)."""
        get = self._get
        return np.array([get(v) for v in vectors], dtype=float).reshape(
            len(vectors), len(self.features)
        )

    def _learn(self, x: np.ndarray, y: bool) -> None:
        """One label, every feature present: the scaler's update, then the regression's."""
        counts, means, variances = self.counts, self.means, self.vars
        counts += 1.0
        old = means.copy()
        means += (x - old) / counts
        variances += ((x - old) * (x - means) - variances) / counts
        scaled = np.divide(x - means, np.sqrt(variances), out=np.zeros_like(x), where=variances > 0)
        loss_gradient = self._gradient(float(scaled @ self.weights) + self.intercept, y)
        gradient = scaled * loss_gradient
        if self.l2:
            gradient += self.l2 * self.weights
        self.intercept -= self.intercept_lr * loss_gradient
        self._step(gradient, self.weights, self._m, self._v)

    def _learn_at(self, at: np.ndarray, x: np.ndarray, y: bool) -> None:
        """:meth:`_learn` for the features at positions ``at`` only."""
        self.counts[at] += 1.0
        counts = self.counts[at]
        old = self.means[at]
        means = old + (x - old) / counts
        variances = self.vars[at]
        variances += ((x - old) * (x - means) - variances) / counts
        self.means[at], self.vars[at] = means, variances
        scaled = np.divide(x - means, np.sqrt(variances), out=np.zeros_like(x), where=variances > 0)
        weights = self.weights[at]
        loss_gradient = self._gradient(float(scaled @ weights) + self.intercept, y)
        gradient = scaled * loss_gradient
        if self.l2:
            gradient += self.l2 * weights
        self.intercept -= self.intercept_lr * loss_gradient
        m, v = self._m[at], self._v[at]
        self._step(gradient, weights, m, v)
        self.weights[at], self._m[at], self._v[at] = weights, m, v

    def _gradient(self, raw: float, y: bool) -> float:
        return log_loss_gradient(raw, y, self.weight_pos, self.weight_neg, self.clip_gradient)

    def _step(
        self, gradient: np.ndarray, weights: np.ndarray, m: np.ndarray, v: np.ndarray
    ) -> None:
        """Move ``weights`` (in place) against ``gradient``."""
        self.steps += 1
        if self.optimizer == "sgd":
            weights -= self.lr * gradient
            return
        adam_step(gradient, weights, m, v, self.steps, self.lr, self.beta_1, self.beta_2, self.eps)

    # -- scoring -----------------------------------------------------------------------

    def predict_proba_one(
        self, x: dict[Hashable, Any], **kwargs: Any
    ) -> dict[base.typing.ClfTarget, float]:
        """The probabilities of ``False`` and ``True`` (fraud) for ``x`` (a feature the model
        has not met is ignored; one missing from ``x`` adds nothing).

        Parameters
        ----------
        x
            The feature vector.
        **kwargs
            Ignored (River's signature).
        """
        row = self._full(x)
        if row is not None:
            raw = float(standard_scaled(row, self.means, self.vars) @ self.weights)
        else:
            known = [name for name in x if name in self._index]
            at = np.array([self._index[name] for name in known], dtype=np.intp)
            values = np.array([x[name] for name in known], dtype=float)
            raw = float(standard_scaled(values, self.means[at], self.vars[at]) @ self.weights[at])
        p = sigmoid(raw + self.intercept)
        return {False: 1.0 - p, True: p}

    def predict_proba_rows(self, rows: np.ndarray) -> np.ndarray:
        """The fraud probability of each row of ``rows`` (columns in :attr:`features` order).

        >>> model = ScaledLogistic()
        >>> for i in range(30):
        ...     model.learn_one({"x": float(i % 4), "y": 1.0}, i % 4 == 3)
        >>> vectors = [{"x": 3.0, "y": 1.0}, {"x": 0.0, "y": 1.0}]
        >>> many = model.predict_proba_rows(model.rows(vectors))
        >>> one = [model.predict_proba_one(v)[True] for v in vectors]
        >>> bool(np.allclose(many, one, rtol=1e-12, atol=0))
        True
        """
        raw = standard_scaled(rows, self.means, self.vars) @ self.weights + self.intercept
        with np.errstate(over="ignore"):
            return 1.0 / (1.0 + np.exp(-raw))
