"""The scorecard of a replayed scenario: its metrics equal scikit-learn's on the same
scores, its alarms are judged against the manifest, its files are real, and the
embedded run scores the vectors the stream's own replay computes, learning no label
before it arrives."""

from __future__ import annotations

import asyncio
import json
import math
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from features.vector import FEATURE_NAMES
from models.evaluation import card_precision_at_k
from monitoring.drift.config import DriftConfig
from monitoring.judging import Alarm, judge, per_change
from producers.scenario import load_scenario, moved, run_scenario
from stream.cli import main
from stream.cli.scorecard import Plan, replay_and_judge, write
from stream.offline import replay_features
from stream.scorecard.embedded import run_embedded
from stream.scorecard.judge import ScorecardOptions
from stream.scorecard.options import SERVED, EmbeddedOptions, EmbeddedResult, Promotion
from stream.sources import Source, events_from_frames
from tests.support import num

DAY = 86400.0
#: The champion an embedded run and the scorecard command score with by default.
CHAMPION = EmbeddedOptions().model
#: Small windows and no maturity wait, so that detectors run on a short scenario.
FAST_DRIFT = DriftConfig(
    reference_size=800,
    window_size=800,
    check_every=200,
    reference_days=0,
    state_maturity_days=0,
    warm_up=300,
    kswin_every=0,
)


Shifted = tuple[Plan, dict[str, Any], Path, EmbeddedResult]


@pytest.fixture(scope="module")
def shifted(tmp_path_factory: pytest.TempPathFactory) -> Shifted:
    """sudden_covariate_shift at 300 customers (amounts x3 from day 14), its scorecard."""
    simulation, manifest = run_scenario(load_scenario("sudden_covariate_shift"), customers=300)
    out = tmp_path_factory.mktemp("card")
    plan = Plan(
        Source(simulation.transactions, simulation.labels, [], manifest),
        "sudden_covariate_shift",
        out,
        EmbeddedOptions(
            drift=FAST_DRIFT,
            compare=("hoeffding_adaptive_tree",),
            keep_records=True,
            keep_vectors=True,
        ),
        ScorecardOptions(warm_up_days=3),
        plots=True,
    )
    result, card = replay_and_judge(plan)
    write(plan, result, card)
    return plan, card, out, result


def test_scorecard_has_the_manifest_change_points_and_judges_the_alarms(shifted: Shifted) -> None:
    plan, card, _, _ = shifted
    [point] = card["change_points"]
    assert point["kind"] == "amount_shift"
    assert plan.source.manifest is not None
    assert point["event_time"] == plan.source.manifest["change_points"][0]["event_time"]
    alarms = [Alarm(a["detector"], a["subject"], a["first_seen"]) for a in card["alarms"]]
    assert alarms, "the amounts triple: the data-drift detectors must alarm"
    change = point["event_time"]
    assert point["detection"] == per_change(alarms, [change], 3 * DAY)[0]
    assert point["detection"]["detected"]
    assert 0 <= point["detection"]["first"]["delay_hours"] <= 72
    judged = judge(
        alarms,
        [change],
        num(plan.source.transactions["event_time"].min()),
        num(plan.source.transactions["event_time"].max()),
    )
    assert card["detectors"]["any"]["recall"] == 1.0
    assert card["detectors"]["any"]["false_alarms"] == judged["any"]["false_alarms"]
    early = [a for a in alarms if a.at < change or a.at > change + 3 * DAY]
    assert card["detectors"]["any"]["false_alarms"] == len(early)


def _truth_arrays(plan: Plan, result_ids: list[str]) -> np.ndarray:
    truth = dict(plan.source.labels.select("txn_id", "is_fraud").iter_rows())
    return np.array([truth[t] for t in result_ids], dtype=int)


def test_daily_metrics_equal_scikit_learn_and_the_reference_cp_at_k(shifted: Shifted) -> None:
    plan, card, _, result = shifted
    truth = _truth_arrays(plan, result.txn_ids)
    scores = result.scores[CHAMPION]
    days = np.floor(result.times / DAY) * DAY
    daily = card["models"][CHAMPION]["daily"]
    checked = 0
    for i, day in enumerate(daily["day"]):
        on = days == day
        y, s = truth[on], scores[on]
        cp = card_precision_at_k(s, y, result.cards[on], result.times[on], 100)
        assert daily["card_precision_at_k"][i] == pytest.approx(cp)
        if 0 < y.sum() < len(y):
            assert daily["average_precision"][i] == pytest.approx(average_precision_score(y, s))
            assert daily["roc_auc"][i] == pytest.approx(roc_auc_score(y, s))
            checked += 1
        else:
            assert daily["average_precision"][i] is None or y.sum() > 0
    assert checked >= 20
    overall = card["models"][CHAMPION]["overall"]
    assert overall["average_precision"] == pytest.approx(average_precision_score(truth, scores))
    assert overall["transactions"] == len(truth)
    # The frozen baseline and the challenger were scored on every transaction too.
    assert set(card["models"]) == {CHAMPION, "hoeffding_adaptive_tree", "frozen"}


def test_report_and_plots_exist_and_show_something(shifted: Shifted) -> None:
    import matplotlib.image

    _, card, out, _ = shifted
    saved = json.loads((out / "scorecard.json").read_text())
    assert saved["change_points"][0]["kind"] == "amount_shift"
    for name in ("metrics_per_day", "scores_per_day", "label_delay", "drift_statistics"):
        pixels = matplotlib.image.imread(out / f"{name}.png")
        assert pixels.shape[0] > 200 and pixels.shape[1] > 500
        assert pixels[..., :3].std() > 0.05, f"{name}.png is blank"

    class Page(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.tables: list[str] = []
            self.images: list[str] = []
            self.text: list[str] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            if tag == "table":
                self.tables.append(dict(attrs).get("class") or "")
            if tag == "img":
                self.images.append(dict(attrs).get("src") or "")

        def handle_data(self, data: str) -> None:
            self.text.append(data)

    page = Page()
    page.feed((out / "report.html").read_text())
    assert page.tables == ["models", "changes", "detectors", "alarms", "features", "weekly"]
    assert len(page.images) == 4
    assert all(src.startswith("data:image/png;base64,iVBORw0KGgo") for src in page.images)
    text = " ".join(page.text)
    assert "amount_shift" in text and "hoeffding_adaptive_tree" in text
    first = card["change_points"][0]["detection"]["first"]["detector"]
    assert first in text


def test_embedded_run_scores_the_replay_vectors_and_learns_no_label_early() -> None:
    spec = moved(load_scenario("concept_drift"), days=16, change_day=8)
    simulation, _ = run_scenario(spec, customers=120)
    events = simulation.events()
    expected = asyncio.run(replay_features(events))
    result = run_embedded(
        events, EmbeddedOptions(drift=None, keep_records=True, snapshot_every_labels=50)
    )
    assert result.scored == len(expected) > 1000
    for txn_id, record in result.records.items():
        want = expected[txn_id]
        assert want is not None
        assert record.features == want.features
    # A transaction is scored by a snapshot of at most the labels arrived before it.
    arrivals = np.sort(simulation.labels["event_time"].to_numpy())
    for record in result.records.values():
        arrived = int(np.searchsorted(arrivals, record.event_time, side="right"))
        assert record.model_version <= arrived
    assert max(r.model_version for r in result.records.values()) > 0


def test_scorecard_command_runs_a_foreign_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    simulation, _ = run_scenario(load_scenario("baseline"), customers=80, days=10)
    foreign = simulation.transactions.join(
        simulation.labels.select("txn_id", "is_fraud"), on="txn_id", suffix="_label"
    )
    foreign.select(
        foreign["txn_id"].alias("TRANSACTION_ID"),
        foreign["card_id"].alias("CUSTOMER_ID"),
        foreign["terminal_id"].alias("TERMINAL_ID"),
        foreign["amount"].alias("TX_AMOUNT"),
        (foreign["event_time"] * 1000).cast(int).alias("TX_TIME_MS"),
        foreign["is_fraud_label"].cast(int).alias("TX_FRAUD"),
    ).write_csv(tmp_path / "stream.csv")
    maps = [
        "txn_id=TRANSACTION_ID",
        "card_id=CUSTOMER_ID",
        "terminal_id=TERMINAL_ID",
        "amount=TX_AMOUNT",
        "event_time=TX_TIME_MS",
        "is_fraud=TX_FRAUD",
    ]
    args = [a for m in maps for a in ("--map", m)]
    code = main(
        [
            "scorecard",
            str(tmp_path / "stream.csv"),
            *args,
            "--map",
            "time_format=epoch_ms",
            "--map",
            "label_delay_days=2",
            "--out",
            str(tmp_path / "out"),
            "--no-plots",
        ]
    )
    assert code == 0, capsys.readouterr().err
    card = json.loads((tmp_path / "out" / "scorecard.json").read_text())
    assert card["change_points"] == []
    assert card["run"]["transactions"] == simulation.transactions.height
    assert card["label_delay"]["all"]["p50_days"] == pytest.approx(2.0)
    assert not math.isnan(card["models"][CHAMPION]["overall"]["roc_auc"])
    assert CHAMPION in capsys.readouterr().out


def test_judging_counts_alarms_past_the_maximum_delay_as_false() -> None:
    changes = [10 * DAY, 20 * DAY]
    alarms = [
        Alarm("psi", "a", 10 * DAY + 4 * DAY),  # too late for the first change
        Alarm("psi", "b", 20 * DAY + 1 * DAY),  # within 3 days of the second
        Alarm("ks", "a", 11 * DAY),
        Alarm("ks", "a", 5 * DAY),
    ]
    result = judge(alarms, changes, 0.0, 30 * DAY, max_delay=3 * DAY)
    psi, ks = result["detectors"]["psi"], result["detectors"]["ks"]
    assert (psi["recall"], psi["precision"], psi["false_alarms"]) == (0.5, 0.5, 1)
    assert psi["mean_delay_hours"] == pytest.approx(24.0)
    assert (ks["recall"], ks["precision"], ks["false_alarms"]) == (0.5, 0.5, 1)
    assert result["any"]["recall"] == 1.0
    assert result["any"]["false_alarms_per_30_days"] == pytest.approx(2.0)


def test_scorecard_arguments_are_checked(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scorecard", "baseline", "--customers", "0"]) == 2
    assert "--customers" in capsys.readouterr().err
    assert main(["scorecard", "no_such_scenario"]) == 1
    assert "not a built-in scenario" in capsys.readouterr().err
    assert main(["scorecard", "baseline", "--compare", "nope"]) == 1
    assert "unknown model 'nope'" in capsys.readouterr().err


def test_each_feature_is_judged_alone_on_the_vectors_it_was_scored_with(shifted: Shifted) -> None:
    plan, card, _, result = shifted
    truth = _truth_arrays(plan, result.txn_ids)
    after = result.times >= result.times.min() + 3 * DAY
    assert result.vectors is not None
    assert result.vectors.shape == (len(result.txn_ids), len(FEATURE_NAMES))
    column = list(card["features"]).index("txn_amount_log")
    for txn_id, row in zip(result.txn_ids[:300], result.vectors[:300], strict=True):
        assert row[column] == pytest.approx(result.records[txn_id].features["txn_amount_log"])
    for name in ("txn_amount_log", "terminal_fraud_rate_1d", "card_distance_from_usual_km"):
        x = result.vectors[after, list(card["features"]).index(name)].astype(float)
        y = truth[after]
        judged = card["features"][name]
        assert judged["nonzero_share"] == pytest.approx(np.mean(x != 0))
        signed = x if judged["direction"] == "high" else -x
        assert judged["average_precision"] == pytest.approx(average_precision_score(y, signed))
        assert judged["average_precision"] >= average_precision_score(y, -signed) - 1e-12
    # With labels two days late, a 1-day window counted by label arrival is almost empty.
    assert card["features"]["terminal_fraud_rate_1d"]["nonzero_share"] < 0.01


def test_a_foreign_row_that_does_not_fit_is_reported_and_the_exit_says_so(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """As ``fraudstream replay`` does: the row's number and reason, and exit status 3."""
    rows = ["id,card,term,amt,ts,fraud"]
    start = 1_767_225_600_000
    rows += [
        f"t{i},c{i % 5},p{i % 3},{10 + i % 7},{start + i * 600_000},{i % 40 == 0:d}"
        for i in range(400)
    ]
    rows.insert(7, "bad id!,c1,p1,NaN,yesterday,1")
    (tmp_path / "s.csv").write_text("\n".join(rows) + "\n")
    maps = [
        "txn_id=id",
        "card_id=card",
        "terminal_id=term",
        "amount=amt",
        "event_time=ts",
        "is_fraud=fraud",
        "time_format=epoch_ms",
    ]
    code = main(
        [
            "scorecard",
            str(tmp_path / "s.csv"),
            *[a for m in maps for a in ("--map", m)],
            "--out",
            str(tmp_path / "out"),
            "--no-plots",
        ]
    )
    assert code == 3
    assert "row 7: txn_id" in capsys.readouterr().err
    card = json.loads((tmp_path / "out" / "scorecard.json").read_text())
    assert card["source"]["rejected_rows"] == 1 and card["run"]["transactions"] == 400


def test_a_challenger_that_beats_the_serving_model_is_promoted_and_serves() -> None:
    """An undersampling logistic regression ranks worse than the plain one
    (docs/models.md): the plain one, in shadow, is ahead once labels come, and takes over."""
    simulation, _ = run_scenario(load_scenario("baseline"), days=30, customers=200)
    options = EmbeddedOptions(
        model="logistic_regression+undersample",
        compare=("logistic_regression",),
        freeze_after_days=None,
        drift=None,
        promote=Promotion(labels=2000, margin=0.0, alpha=0.05, every=500),
    )
    result = run_embedded(events_from_frames(simulation.transactions, simulation.labels), options)
    assert result.champion == SERVED and result.promotions
    first = result.promotions[0]
    assert (first["from"], first["to"]) == (
        "logistic_regression+undersample",
        "logistic_regression",
    )
    assert float(first["to_ap"]) > float(first["from_ap"]) and float(first["p_value"]) <= 0.05
    served, tree = result.scores[SERVED], result.scores["logistic_regression+undersample"]
    regression = result.scores["logistic_regression"]
    before = result.times < float(first["at"])
    after = result.times > float(first["at"]) + DAY  # (the batch in flight ends first)
    if len(result.promotions) > 1:  # (the first could win back later; not in this run)
        after &= result.times < float(result.promotions[1]["at"])
    assert before.sum() > 1000 and after.sum() > 1000
    assert np.array_equal(served[before], tree[before], equal_nan=True)
    assert np.allclose(served[after], regression[after], equal_nan=True)
    assert not np.allclose(served[after], tree[after], equal_nan=True)


def test_promote_needs_challengers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scorecard", "baseline", "--days", "2", "--promote", "--out", str(tmp_path)]) == 1
    assert "--promote: name the challengers" in capsys.readouterr().err
