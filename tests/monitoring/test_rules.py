"""The alert and recording rules of infrastructure/monitoring: promtool accepts them and their
unit tests pass, every alert is tested firing and quiet, and every metric they name exists."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.monitoring.promql import MONITORING, RULES, is_known, known_metrics, metric_names

UNIT_TESTS = MONITORING / "tests"
README = MONITORING / "README.md"
SEVERITIES = {"warning", "critical"}


def _load(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return loaded


def _rules() -> list[dict[str, Any]]:
    return [
        rule
        for path in sorted(RULES.glob("*.yml"))
        for group in _load(path)["groups"]
        for rule in group["rules"]
    ]


def _alerts() -> list[dict[str, Any]]:
    return [rule for rule in _rules() if "alert" in rule]


def _alert_cases() -> list[dict[str, Any]]:
    return [
        case
        for path in sorted(UNIT_TESTS.glob("*.yml"))
        for test in _load(path)["tests"]
        for case in test.get("alert_rule_test", [])
    ]


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool not installed: apt-get install -y prometheus (Debian/Ubuntu)")
    return found


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=MONITORING, capture_output=True, text=True, timeout=120, check=False
    )


def test_promtool_accepts_the_rule_files() -> None:
    files = [str(p.relative_to(MONITORING)) for p in sorted(RULES.glob("*.yml"))]
    assert len(files) == 2
    done = _run(_promtool(), "check", "rules", *files)
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_unit_tests_of_the_rules_pass() -> None:
    files = [str(p.relative_to(MONITORING)) for p in sorted(UNIT_TESTS.glob("*.yml"))]
    assert files
    done = _run(_promtool(), "test", "rules", *files)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_is_tested_firing_and_quiet() -> None:
    cases = _alert_cases()
    for name in {rule["alert"] for rule in _alerts()}:
        mine = [case for case in cases if case["alertname"] == name]
        assert any(case.get("exp_alerts") for case in mine), f"{name}: no case where it fires"
        assert any(not case.get("exp_alerts") for case in mine), f"{name}: no quiet case"


def test_the_required_alerts_exist() -> None:
    assert {rule["alert"] for rule in _alerts()} == {
        "ZdpDeploymentStuck",
        "ZdpRollback",
        "ZdpDeploymentPaused",
        "ZdpGateInconclusive",
        "ZdpCanaryErrorBudgetBurn",
        "ZdpWorkerDown",
        "ZdpAuditAppendFailing",
        "ZdpApprovalExpiring",
    }


def test_every_recording_rule_is_tested() -> None:
    tested = " ".join(
        case["expr"]
        for path in sorted(UNIT_TESTS.glob("*.yml"))
        for test in _load(path)["tests"]
        for case in test.get("promql_expr_test", [])
    )
    for rule in _rules():
        if "record" in rule:
            assert rule["record"] in tested, f"{rule['record']} has no promql_expr_test"


def test_every_alert_has_a_severity_a_summary_and_a_runbook_section() -> None:
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in README.read_text(encoding="utf-8").splitlines()
        if line.startswith("#")
    }
    for rule in _alerts():
        name = rule["alert"]
        assert re.fullmatch(r"Zdp[A-Z][A-Za-z]+", name), name
        assert rule["labels"]["severity"] in SEVERITIES, name
        notes = rule["annotations"]
        assert notes["summary"] and notes["description"], name
        page, _, anchor = notes["runbook"].partition("#")
        assert page == "infrastructure/monitoring/README.md", name
        assert anchor == name.lower() and anchor in anchors, f"{name}: no README section {anchor}"


def test_canary_alert_names_the_deployment_by_app_and_environment() -> None:
    """The Alertmanager receiver maps ZdpCanaryErrorBudgetBurn to a running deployment by
    alertname + app + environment: every firing case must carry both labels."""
    fired = [
        alert["exp_labels"]
        for case in _alert_cases()
        if case["alertname"] == "ZdpCanaryErrorBudgetBurn"
        for alert in case.get("exp_alerts") or []
    ]
    assert fired
    assert all(labels.get("app") and labels.get("environment") for labels in fired)


def test_rules_name_only_metrics_that_exist() -> None:
    known = known_metrics()
    recorded = {rule["record"] for rule in _rules() if "record" in rule}
    for rule in _rules():
        for name in metric_names(rule["expr"]):
            assert name in recorded or is_known(name, known), (
                f"{rule.get('alert') or rule.get('record')}: {name} is neither an engine, app, "
                "Temporal SDK or Envoy metric nor recorded here"
            )


def test_metric_names_are_read_from_promql() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, app) (rate(x_bucket{path!~"/a|b(c)"}[5m])))'
        ' / on (app) group_left () y offset 5m > 3e5 or absent(up{job="w"}) unless z'
    )
    assert metric_names(expr) == {"x_bucket", "y", "up", "z"}
