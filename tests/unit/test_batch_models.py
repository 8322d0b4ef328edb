"""Batch-retrained challengers: refit on the kept vectors, served as read-only copies."""

from __future__ import annotations

import copy
import io
import pickle
import random
from pathlib import Path

import numpy as np
import pytest

from models.batch import BatchRetrained
from models.calls import fraud_probability, learn
from models.evaluation import average_precision
from models.factory import build_model

ROOT = Path(__file__).resolve().parents[2]


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
    assert served.held == 0 and len(served.rows) == 0 and model.held == 4000
    again = pickle.loads(pickle.dumps(served))
    assert fraud_probability(again, test[0][0]) == pytest.approx(scores[0])


def test_kept_rows_are_the_newest_and_a_pickle_carries_the_fit_only() -> None:
    """The buffers keep the newest ``keep`` rows in order across compactions. A pickle (a
    published snapshot) carries the fit, not the rows, and a model loaded from one keeps
    that fit until it holds as many rows again; one pickled before the rows were arrays
    loads its lists."""
    model = BatchRetrained("logistic_regression", retrain_every=1000, keep=1000)
    for i in range(5000):
        model.learn_one({"i": float(i % 50), "odd": float(i % 2)}, i % 3 == 0)
    kept = model.rows[model.held - model.keep : model.held]
    assert kept.shape[1] == 2 and model.names == ["i", "odd"]
    assert kept[:, 0].tolist() == [float(i % 50) for i in range(4000, 5000)]
    assert model.labels[model.held - 1] == (4999 % 3 == 0)
    assert (model.fits, model.fitted_rows) == (5, 1000)
    raw = pickle.dumps(model)
    again = pickle.loads(raw)
    assert again.held == 0 and len(raw) < 20_000
    probe = {"i": 3.0, "odd": 1.0}
    served = fraud_probability(model, probe)
    for i in range(1000):  # the refit at 6,000 labels finds 1,000 rows: it refits
        again.learn_one({"i": float(i % 50), "odd": float(i % 2)}, i % 2 == 0)
    assert again.fits == 6 and fraud_probability(again, probe) != served
    restarted = pickle.loads(raw)
    restarted.retrain_every = 500  # a refit due at 5,500 labels finds 500 rows: it waits
    for i in range(500):
        restarted.learn_one({"i": float(i % 50), "odd": float(i % 2)}, i % 2 == 0)
    assert restarted.fits == 5 and fraud_probability(restarted, probe) == served
    for i in range(500):  # at 6,000 it holds the 1,000 rows its fit had: it refits
        restarted.learn_one({"i": float(i % 50), "odd": float(i % 2)}, i % 2 == 0)
    assert restarted.fits == 6 and restarted.fitted_rows == 1000
    old = model.__dict__.copy()  # the layout pickled before: lists of floats and of bools
    old["rows"] = [[float(i), float(i % 2)] for i in range(3)]
    old["labels"] = [True, False, False]
    for name in ("held", "fitted_rows"):
        del old[name]
    legacy = BatchRetrained.__new__(BatchRetrained)
    legacy.__setstate__(old)
    assert legacy.held == 3 and legacy.rows.dtype == np.float32 and legacy.fitted_rows == 0
    assert legacy.rows[:, 0].tolist() == [0.0, 1.0, 2.0] and legacy.labels.tolist() == [
        True,
        False,
        False,
    ]


def test_gradient_boosting_scores_as_scikit_learn_does_also_from_an_old_pickle() -> None:
    """The fit is kept as flat trees (:mod:`models.trees`) and scores as scikit-learn's own
    predictor; a snapshot that pickled scikit-learn's model loads as flat trees."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(5)
    x = rng.normal(size=(3000, 4))
    x[::11, 2] = np.nan  # missing values go where each node sends them
    y = (x[:, 0] > 1.0) | (np.nan_to_num(x[:, 2]) < -1.5)
    fitted = HistGradientBoostingClassifier(max_iter=40, random_state=42).fit(x, y)
    old = BatchRetrained("gradient_boosting").__dict__.copy()
    old.update(names=["a", "b", "c", "d"], rows=[], labels=[], _fitted=fitted, fits=1)
    for key in ("held", "fitted_rows"):
        del old[key]
    model = BatchRetrained.__new__(BatchRetrained)
    model.__setstate__(old)
    probe = x[:200]
    assert np.allclose(
        model.probabilities(probe), fitted.predict_proba(probe)[:, 1], rtol=1e-12, atol=0
    )
    assert fraud_probability(model, {"a": 2.0, "b": 0.0, "c": np.nan, "d": 0.0}) == pytest.approx(
        fitted.predict_proba([[2.0, 0.0, np.nan, 0.0]])[0, 1], rel=1e-12
    )


def test_a_fit_in_the_background_lets_the_event_loop_go_on_and_then_serves() -> None:
    """With :func:`in_background` a refit runs in a child process: an event loop keeps its timer
    ticking while it runs, learning goes on, and the next label after it finishes
    serves its fit (the same fit as in line, on the same rows)."""
    import asyncio
    import time

    from models.batch import in_background

    rnd = random.Random(9)
    rows = [
        (
            {"a": rnd.gauss(0, 1), "b": rnd.random(), **{f"n{i}": rnd.random() for i in range(6)}},
            False,
        )
        for _ in range(40_000)
    ]
    rows = [(x, (x["a"] > 1.8 and x["b"] < 0.5) or rnd.random() < 0.01) for x, _ in rows]
    inline = BatchRetrained("gradient_boosting", retrain_every=40_000)
    threaded = BatchRetrained("gradient_boosting", retrain_every=40_000)
    in_background(threaded)
    for model in (inline, threaded):
        for x, y in rows:
            model.learn_one(x, y)
    assert inline.fits == 1 and threaded.fits == 0 and threaded._pending is not None

    async def ticking() -> tuple[float, float]:
        """How long the fit ran, and the longest gap between 5 ms ticks meanwhile."""
        longest, began = 0.0, time.perf_counter()
        last = began
        while threaded._pending is not None and not threaded._pending[0].done():
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            longest, last = max(longest, now - last), now
        return last - began, longest

    ran, longest = asyncio.run(ticking())
    assert ran > 0.1 and longest < ran / 4, (ran, longest)  # never held for the fit's length
    threaded.learn_one({"a": 0.0, "b": 0.0}, False)  # the next label adopts the fit
    assert threaded.fits == 1 and threaded.fitted_rows == 40_000
    probe = np.array([[2.5, 0.1] + [0.5] * 6, [0.0, 0.9] + [0.5] * 6])
    assert np.allclose(threaded.probabilities(probe), inline.probabilities(probe))
    assert pickle.loads(pickle.dumps(threaded))._pending is None


def test_imported_rows_count_only_the_replayed_labels_they_already_hold() -> None:
    """Rows exported at 1,000 labels, taken back by a model loaded from a snapshot of 600:
    of a 300-label journal replay, the 300 the rows hold are counted, not kept twice;
    after a rollback (no journal) every new label is kept."""
    model = BatchRetrained("logistic_regression", retrain_every=10**9)
    for i in range(1000):
        model.learn_one({"i": float(i)}, i % 4 == 0)
    out = io.BytesIO()
    model.export_rows(out)
    raw = out.getvalue()

    def loaded_at_600(replayed: int) -> BatchRetrained:
        twin: BatchRetrained = pickle.loads(pickle.dumps(model))
        twin.learned = 600
        twin.import_rows(raw, replayed)
        return twin

    replaying = loaded_at_600(300)
    for i in range(600, 1100):  # the journal's 300 labels, then 200 new ones
        replaying.learn_one({"i": float(i)}, False)
    assert replaying.held == 1200 and replaying.learned == 1100
    assert replaying.rows[1000:1200, 0].tolist() == [float(i) for i in range(900, 1100)]
    rolled_back = loaded_at_600(0)
    rolled_back.learn_one({"i": -1.0}, True)
    assert rolled_back.held == 1001 and rolled_back.rows[1000, 0] == -1.0
    other = BatchRetrained("logistic_regression")
    other.names = ["other"]
    with pytest.raises(ValueError, match="features"):
        other.import_rows(raw)


def test_a_due_refit_waits_for_min_days_of_event_time() -> None:
    """Due every 100 labels, at a label every 10 minutes (100 labels: 17 hours), with
    ``min_days=1`` a refit comes once a day of arrivals passed since the last began."""
    model = BatchRetrained("logistic_regression", retrain_every=100, min_days=1.0)
    fits_at: list[float] = []
    for i in range(1000):
        model.learn_one({"x": float(i % 7)}, i % 5 == 0, known_at=600.0 * i)
        if model.fits > len(fits_at):
            fits_at.append(i)
    assert fits_at[:4] == [99, 243, 387, 531]  # 100 labels, then 144 (a day) apart
    every = BatchRetrained("logistic_regression", retrain_every=100)
    for i in range(1000):
        every.learn_one({"x": float(i % 7)}, i % 5 == 0, known_at=600.0 * i)
    assert every.fits == 10


def test_fitting_on_a_sample_of_genuine_rows_keeps_the_ranking_and_the_base_rate() -> None:
    """Every fraud and 8,000 of the 29,000 genuine rows: the log-odds moved back by the
    sampling rate, so the scores stay probabilities of the whole traffic."""
    from models.batch_fit import fit, sample
    from models.evaluation import average_precision

    rng = np.random.default_rng(3)
    x = rng.normal(size=(30_000, 3))
    y = rng.random(30_000) < 1 / (1 + np.exp(-(x[:, 0] * 2 + x[:, 1] - 5)))
    test = rng.normal(size=(20_000, 3))
    truth = rng.random(20_000) < 1 / (1 + np.exp(-(test[:, 0] * 2 + test[:, 1] - 5)))
    for kind in ("gradient_boosting", "logistic_regression"):
        whole = BatchRetrained(kind)
        whole._fitted = fit(kind, x, y, 42)
        sampled = BatchRetrained(kind)
        sampled._fitted = fit(kind, x, y, 42, max_genuine=8_000)
        p_whole, p_sampled = whole.probabilities(test), sampled.probabilities(test)
        assert average_precision(p_sampled, truth) > average_precision(p_whole, truth) - 0.05
        assert p_sampled.mean() == pytest.approx(truth.mean(), rel=0.3), kind
        assert p_whole.mean() == pytest.approx(truth.mean(), rel=0.3), kind
        # what a model fits: the sample taken first, only its float32 rows copied
        rows, shift = sample(y, 42, 8_000)
        assert rows is not None and shift < 0
        stored = x.astype(np.float32)
        first = BatchRetrained(kind)
        first._fitted = fit(kind, stored[rows], y[rows], 42, None, shift)
        after = BatchRetrained(kind)
        after._fitted = fit(kind, stored.astype(float), y, 42, max_genuine=8_000)
        assert first.probabilities(test).tolist() == after.probabilities(test).tolist()


def test_a_fit_process_ends_with_the_process_that_started_it(tmp_path: Path) -> None:
    """A worker killed mid-fit (kill -9) leaves no fit process behind: the child sees its
    parent gone and exits within seconds, long before its minute-long fit would end."""
    import subprocess
    import sys
    import time

    script = tmp_path / "killed_mid_fit.py"
    script.write_text(
        "import os, signal, time\n"
        "from models.batch import _background\n"
        "if __name__ == '__main__':\n"
        "    pool = _background()\n"
        "    pool.submit(time.sleep, 60)  # a fit that would take a minute\n"
        "    time.sleep(2.0)\n"
        "    print(*pool._processes, flush=True)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    children = [int(pid) for pid in done.stdout.split()]
    assert len(children) == 1  # the fit was running in its own process
    deadline = time.monotonic() + 5
    while Path(f"/proc/{children[0]}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    state = Path(f"/proc/{children[0]}/stat")
    assert not state.exists() or state.read_text().split()[2] == "Z"  # gone (or a zombie)
