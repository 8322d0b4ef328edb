"""Alert rules and routing: valid, unit-tested with promtool, documented in the runbook."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml

from tests.support import REPO

RULES = REPO / "monitoring" / "rules"
RUNBOOK = REPO / "docs" / "runbook.md"


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:  # make test installs them (fraudstream services install)
        pytest.fail(f"{name} is not installed; run `fraudstream services install`")
    return path


def alerts() -> list[dict[str, object]]:
    found = []
    for path in sorted(RULES.glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            found += [rule for rule in group["rules"] if "alert" in rule]
    return found


def test_the_rule_files_pass_promtool_check() -> None:
    files = [str(p) for p in sorted(RULES.glob("*.yml"))]
    done = subprocess.run(
        [tool("promtool"), "check", "rules", *files], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_rules_pass_their_promtool_unit_tests() -> None:
    tests = [str(p) for p in sorted((RULES / "tests").glob("*.yml"))]
    done = subprocess.run(
        [tool("promtool"), "test", "rules", *tests],
        capture_output=True,
        text=True,
        cwd=RULES / "tests",
    )
    assert done.returncode == 0 and "SUCCESS" in done.stdout, done.stdout + done.stderr


def test_the_alertmanager_routing_is_valid() -> None:
    done = subprocess.run(
        [tool("amtool"), "check-config", str(REPO / "monitoring" / "alertmanager.yml")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 inhibit rules" in done.stdout


def test_every_alert_is_explained_and_has_a_runbook_section() -> None:
    runbook = RUNBOOK.read_text()
    anchors = {
        re.sub(r"[^a-z0-9]", "", h.lower())
        for h in re.findall(r"^### (.+)$", runbook, re.MULTILINE)
    }
    names = set()
    for rule in alerts():
        name = str(rule["alert"])
        names.add(name)
        notes = rule["annotations"]
        assert isinstance(notes, dict)
        assert {"summary", "description", "runbook_url"} <= set(notes), name
        assert notes["runbook_url"] == f"docs/runbook.md#{name.lower()}", name
        assert name.lower() in anchors, f"docs/runbook.md has no section for {name}"
        labels = rule["labels"]
        assert isinstance(labels, dict) and labels["severity"] in {"critical", "warning", "info"}
    assert len(names) >= 13
