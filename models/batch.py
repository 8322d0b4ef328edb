"""Batch-retrained challengers: scikit-learn models refitted on the stored vectors.

The online champion must beat a model that is simply retrained in batch
from time to time on everything labelled so far. :class:`BatchRetrained`
is that model behind River's classifier vocabulary, so it runs wherever a
River model does (a challenger in shadow, the scorecard's ``--compare``):

- ``learn_one`` keeps the vector and its label (the last ``keep`` of them)
  and refits from scratch every ``retrain_every`` labels (the learner passes
  no time, so the cadence is counted in labels: at 1,000 simulated customers
  10,000 labels are about four days);
- ``predict_proba_one`` scores with the latest fit (the base rate before
  the first one).

A copy (``copy.deepcopy``, what a published snapshot is) shares the fitted
model, which is replaced at each refit and never changed, and leaves the
kept vectors behind: a snapshot only scores. A pickle leaves them behind
too (the registry's snapshots); a model loaded from one serves its fit
until it has kept as many rows again.

Examples
--------
>>> import random
>>> rnd = random.Random(1)
>>> model = BatchRetrained("logistic_regression", retrain_every=200)
>>> for _ in range(400):
...     x = rnd.gauss(0, 1)
...     model.learn_one({"x": x}, x + rnd.gauss(0, 0.5) > 1.5)
>>> model.fits, model.predict_proba_one({"x": 3.0})[True] > 0.9
(2, True)
>>> import copy
>>> model.held, copy.deepcopy(model).held, copy.deepcopy(model).fits
(400, 0, 2)
"""

from __future__ import annotations

import copy
import functools
import io
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import IO, Any, cast

import numpy as np
from river import base

from models.batch_fit import KINDS, fit, sample
from models.trees import FlatTrees

log = logging.getLogger(__name__)


@functools.cache
def _background() -> ProcessPoolExecutor:
    """The child process background fits run in (one at a time, in any number of models).

    A process, not a thread: beside an event loop that keeps the interpreter busy, a fit in
    a thread gets the GIL so rarely that a 3 s fit took 82 to 127 s, and a learner going
    flat out finished none in 600,000 labels; in a process it takes 2 to 4 s on the other
    core and the loop runs as fast (docs/performance.md). A process per fit (it exits after
    one): its libraries and rows hold about 200 MB, which a worker then holds only while a
    fit runs (every few days of event time), for 1.4 s more per fit to start it. Spawned,
    not forked: the worker runs threads (Kafka, Redis) a fork would copy mid-way.
    """
    return ProcessPoolExecutor(
        max_workers=1,
        mp_context=multiprocessing.get_context("spawn"),
        max_tasks_per_child=1,
        initializer=_exit_with_parent,
        initargs=(os.getpid(),),
    )


def _exit_with_parent(parent: int) -> None:
    """In the fit's process: exit as soon as the process that started it is gone (killed
    mid-fit, its fit is of no use to anyone)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _submit(job: tuple[Any, ...]) -> Future[Any]:
    """``fit(*job)`` in the background process, started again if it died (a fit's memory
    killed it, say): the fit it was running is reported lost by its future."""
    try:
        return _background().submit(fit, *job)
    except BrokenProcessPool:
        _background.cache_clear()
        log.warning("batch model: the background fit process died; starting another")
        return _background().submit(fit, *job)


def batch_part(model: base.Classifier) -> BatchRetrained | None:
    """``model`` itself if it is a batch model, a hybrid's batch part, else None."""
    for part in (model, getattr(model, "batch", None)):
        if isinstance(part, BatchRetrained):
            return part
    return None


def in_background(model: base.Classifier) -> None:
    """Make ``model``'s batch fits (its own, or a hybrid's batch part's) run in a child process:
    a learner in an event loop goes on learning and publishing while a 200,000-row
    fit takes its 13 s. An embedded run keeps fitting in line, so that it replays the
    same way every time."""
    part = batch_part(model)
    if part is not None:
        part.background = True


class BatchRetrained(base.Classifier):
    """A scikit-learn model refitted every ``retrain_every`` labels on the last ``keep``.

    Parameters
    ----------
    kind
        ``"logistic_regression"`` (standard-scaled) or ``"gradient_boosting"``
        (``HistGradientBoostingClassifier``): one of :data:`KINDS`.
    retrain_every
        A refit is due every this many labels learned.
    keep
        How many of the newest labelled vectors are kept, and fitted on.
    seed
        Seed of the genuine rows' sampling and of the gradient boosting.
    min_days
        A due refit waits until this many days of event time (label arrivals) have passed
        since the last fit began (0: it never waits).
    max_genuine
        Fit on every fraud and at most this many genuine rows (None: all of them).
    """

    def __init__(
        self,
        kind: str = "gradient_boosting",
        retrain_every: int = 10_000,
        keep: int = 200_000,
        seed: int = 42,
        min_days: float = 0.0,
        max_genuine: int | None = None,
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind: {kind!r} is not one of {', '.join(KINDS)}")
        self.kind = kind
        self.retrain_every = retrain_every
        self.keep = keep
        self.seed = seed
        #: A due refit waits until this many days of event time (label arrivals) passed
        #: since the last one: at high volume, 10,000 labels come every few minutes.
        self.min_days = min_days
        #: Fit on every fraud and at most this many genuine rows (None: all of them).
        self.max_genuine = max_genuine
        #: A refit is due (every ``retrain_every`` labels), and when the last one began.
        self._due = False
        self._last_fit_at: float | None = None
        self.names: list[str] | None = None
        #: The kept vectors (float32, columns in ``names`` order) and labels: the first
        #: ``held`` rows of buffers of ``keep * 1.2`` rows, compacted to the newest ``keep``
        #: when full (a row of 46 features: 184 bytes, not the 1.5 KB of a list of floats).
        self.rows = np.empty((0, 0), dtype=np.float32)
        self.labels = np.empty(0, dtype=bool)
        self.held = 0
        self.learned = 0
        self.fits = 0
        #: The rows the latest fit learned from, and the frauds among them.
        self.fitted_rows = 0
        self.fitted_frauds = 0
        self._fitted: Any = None
        self._base_rate = 0.0
        #: Fit in a child process, so that a learner's event loop goes on (:func:`in_background`);
        #: the fit running, and the labels it learns from.
        self.background = False
        self._pending: tuple[Future[Any], np.ndarray] | None = None
        #: Imported rows hold the labels up to this count (:meth:`import_rows`).
        self._counted_until = 0

    def learn_one(self, x: dict[Any, Any], y: Any, **kwargs: Any) -> None:
        """Keep ``x`` and its label, and refit if a refit is due (a label already among the
        imported rows is only counted).

        Parameters
        ----------
        x
            The feature vector (the first one names the features; one it lacks: 0).
        y
            The label (truthy: fraud).
        **kwargs
            ``known_at``: when the label arrived (event time, seconds), for ``min_days``;
            anything else is ignored.
        """
        self.poll()
        if self.learned < self._counted_until:  # already among the imported rows
            self.learned += 1
            return
        if self.names is None:
            self.names = sorted(x)
        if self.held == len(self.rows):
            self._make_room()
        self.rows[self.held] = self.matrix([x])[0]
        self.labels[self.held] = bool(y)
        self.held += 1
        self.learned += 1
        if self.learned % self.retrain_every == 0:
            self._due = True
        if self._due and self._waited(kwargs.get("known_at")):
            self._fit(kwargs.get("known_at"))

    def _waited(self, at: float | None) -> bool:
        """Whether ``min_days`` of event time passed since the last fit began (always, with
        no times)."""
        last = self._last_fit_at
        return at is None or last is None or at - last >= self.min_days * 86400

    def _make_room(self) -> None:
        """Grow the buffers (doubling, up to ``keep * 1.2`` rows), or keep the newest
        ``keep`` rows when they are that long."""
        capacity = int(self.keep * 1.2) + 1
        if len(self.rows) >= capacity:
            start = self.held - self.keep
            self.rows[: self.keep] = self.rows[start : self.held]
            self.labels[: self.keep] = self.labels[start : self.held]
            self.held = self.keep
            return
        size = min(capacity, max(1024, 2 * len(self.rows)))
        rows = np.empty((size, len(self.names or ())), dtype=np.float32)
        labels = np.empty(size, dtype=bool)
        if self.held:
            rows[: self.held] = self.rows[: self.held]
            labels[: self.held] = self.labels[: self.held]
        self.rows, self.labels = rows, labels

    def _fit(self, at: float | None = None) -> None:
        if self._pending is not None:
            return  # a fit is still running in the background: this one waits for it
        self._due = False
        if self.held < min(self.keep, self.fitted_rows):
            return  # fewer rows than the fit being served had (after a restart): keep it
        window = self._window()
        y = self.labels[window].copy()
        self._base_rate = float(y.mean())
        if y.all() or not y.any():
            return
        self._last_fit_at = at if at is not None else self._last_fit_at
        # Only the sampled rows are copied (the buffers move on while a fit runs): 50,000
        # genuine rows and the frauds, not all 200,000 as float64 (74 MB).
        rows, shift = sample(y, self.seed, self.max_genuine)
        x = self.rows[window].copy() if rows is None else self.rows[window][rows]
        job = (self.kind, x, y if rows is None else y[rows], self.seed, None, shift)
        if not self.background:
            self._adopt(fit(*job), y)
            return
        self._pending = (_submit(job), y)

    def _window(self) -> slice:
        """The newest ``keep`` of the rows held: what a fit learns from."""
        return slice(max(0, self.held - self.keep), self.held)

    def _adopt(self, fitted: Any, y: np.ndarray) -> None:
        self._fitted = fitted
        self.fits += 1
        self.fitted_rows, self.fitted_frauds = len(y), int(y.sum())

    def export_rows(self, out: IO[bytes] | None = None) -> IO[bytes]:
        """The kept rows, labels and names, and how many labels had been learned then, as
        numpy's ``.npz`` (no pickle: loading it runs no code), written to ``out`` (a file:
        37 MB at 200,000 rows need not be in memory), by default a new ``BytesIO``."""
        out = io.BytesIO() if out is None else out
        np.savez(
            out,
            rows=self.rows[self._window()],
            labels=self.labels[self._window()],
            names=np.array(self.names or [], dtype=str),
            learned=np.array([self.learned], dtype=np.int64),
        )
        return out

    def import_rows(self, raw: bytes, replayed: int = 0) -> None:
        """Take back rows :meth:`export_rows` wrote (a model loaded from a snapshot, which
        carries none). The ``replayed`` labels to be learned next (the journal since the
        snapshot) that the rows already hold (learned after the snapshot, before the export)
        are counted, not kept twice; after a rollback to an older snapshot the rows hold
        labels it never learned, and the next labels are all kept. Rows of other features
        are refused.

        Parameters
        ----------
        raw
            The ``.npz`` bytes :meth:`export_rows` wrote.
        replayed
            How many labels of the journal are about to be learned again.
        """
        with np.load(io.BytesIO(raw), allow_pickle=False) as data:
            names = data["names"].tolist()
            if self.names is not None and names != self.names:
                raise ValueError(
                    f"training rows: features {len(names)} do not match the "
                    f"model's {len(self.names)}"
                )
            rows, labels = data["rows"].astype(np.float32), data["labels"].astype(bool)
            learned = int(data["learned"][0])
        if len(rows) != len(labels) or (len(rows) and rows.shape[1] != len(names)):
            raise ValueError("training rows: rows, labels and names do not agree")
        self.names = names or self.names
        self.rows, self.labels, self.held = rows, labels, len(rows)
        self._counted_until = self.learned + min(max(0, learned - self.learned), replayed)

    def poll(self) -> None:
        """Serve a fit that finished in the background (the learner calls this with each
        label; a fit that failed is logged and the one before serves on)."""
        if self._pending is None or not self._pending[0].done():
            return
        future, y = self._pending
        self._pending = None
        try:
            self._adopt(future.result(), y)
        except Exception:  # a failed refit must not stop the learner
            log.exception("batch model: a background refit failed; the last fit serves on")

    def predict_proba_one(self, x: dict[Any, Any], **kwargs: Any) -> dict[Any, float]:
        """The probabilities of ``False`` and ``True`` (fraud) for ``x``, from the latest fit
        (the base rate before the first one).

        Parameters
        ----------
        x
            The feature vector (a feature it lacks: 0).
        **kwargs
            Ignored (River's signature).
        """
        if self._fitted is None or self.names is None:
            return {False: 1 - self._base_rate, True: self._base_rate}
        p = float(self.probabilities(self.matrix([x]))[0])
        return {False: 1 - p, True: p}

    def predict_proba_many(self, X: Any) -> Any:
        """Scores of a whole frame of vectors at once (a scikit-learn call costs about a
        millisecond however many rows it gets)."""
        import pandas as pd

        if self._fitted is None or self.names is None:
            p = np.full(len(X), self._base_rate)
        else:
            p = self.probabilities(
                X.reindex(columns=self.names, fill_value=0.0).to_numpy(dtype=float)
            )
        return pd.DataFrame({False: 1 - p, True: p}, index=X.index)

    def matrix(self, vectors: Sequence[Mapping[Any, float]]) -> np.ndarray:
        """``vectors`` as rows in :attr:`names` order (a feature a vector lacks: 0)."""
        names = self.names or []
        return np.array(
            [[float(v.get(n, 0.0)) for n in names] for v in vectors], dtype=float
        ).reshape(len(vectors), len(names))

    def probabilities(self, rows: np.ndarray) -> np.ndarray:
        """The latest fit's scores of a matrix of rows (columns in :attr:`names` order)."""
        if self.kind == "logistic_regression":
            weights, intercept = self._fitted
            return np.asarray(1 / (1 + np.exp(-np.clip(rows @ weights + intercept, -30, 30))))
        return cast(np.ndarray, self._fitted.probabilities(rows))

    def __deepcopy__(self, memo: dict[int, Any]) -> BatchRetrained:
        twin = copy.copy(self)
        # A snapshot scores: the fitted model is shared, the kept rows stay behind.
        twin.rows, twin.labels, twin.held = self.rows[:0].copy(), self.labels[:0].copy(), 0
        twin._pending = None
        return twin

    def __getstate__(self) -> dict[str, Any]:
        """A pickle (a published snapshot) carries the fit, not the kept rows: 200,000
        rows are 37 MB, and a learner publishes every hundred labels. A model loaded from
        one keeps its fit until it holds as many rows again as that fit had
        (:attr:`fitted_rows`), so a restart never refits on a few rows."""
        state = dict(self.__dict__)
        state["rows"], state["labels"], state["held"] = self.rows[:0], self.labels[:0], 0
        state["_pending"] = None  # a fit still running is lost with its process
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if isinstance(state.get("rows"), list):  # pickled before the rows were arrays
            names = state.get("names") or ()
            state["rows"] = np.array(state["rows"], dtype=np.float32).reshape(-1, len(names))
            state["labels"] = np.array(state["labels"], dtype=bool)
        state.setdefault("held", len(state["rows"]))
        for name, value in BatchRetrained().__dict__.items():  # added since it was pickled
            state.setdefault(name, value)
        fitted = state.get("_fitted")
        if fitted is not None and not isinstance(fitted, tuple | FlatTrees):
            state["_fitted"] = FlatTrees.of(fitted)  # scikit-learn's, pickled before
        self.__dict__.update(state)
