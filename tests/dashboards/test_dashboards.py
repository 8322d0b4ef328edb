"""The dashboards as code: the committed JSON is what the code generates, and it is sound."""

from __future__ import annotations

import json

from monitoring.grafana import generate, load, queries
from tests.support import REPO

DASHBOARDS = REPO / "dashboards"


def test_the_committed_json_is_what_the_code_generates() -> None:
    generated = generate(DASHBOARDS)
    assert len(generated) == 4
    for path, text in generated.items():
        assert path.is_file(), f"{path.name} is missing: run `fraudstream dashboards`"
        assert path.read_text() == text, (
            f"{path.name} differs from its code: run `fraudstream dashboards`"
        )


def test_each_dashboard_is_valid_grafana_json_with_queries_on_prometheus() -> None:
    uids = set()
    for path in sorted(DASHBOARDS.glob("*.json")):
        board = json.loads(path.read_text())
        uids.add(board["uid"])
        assert board["panels"], path.name
        for panel in board["panels"]:
            assert panel["targets"], f"{path.name}: {panel['title']} has no query"
            for target in panel["targets"]:
                assert target["expr"] and target["datasource"]["uid"] == "prometheus"
    assert len(uids) == 4


def test_the_drift_dashboard_shows_alarms_as_annotations_and_psi_as_a_heatmap() -> None:
    board = load(DASHBOARDS / "drift.dashboard.py")
    data = json.loads((DASHBOARDS / "drift.json").read_text())
    assert any("fraudstream_drift_alarms_total" in a["expr"] for a in data["annotations"]["list"])
    assert data["panels"][0]["type"] == "heatmap"
    assert "fraudstream_feature_psi" in queries(board)[0]
