"""A gate policy that cannot be had refuses the deployment before anything changes.

Never a gate that checks less than it says: a tier naming a policy that does not exist, or a
policy file with an invalid field, ends the deployment `failed` at assess_risk, with the file
and the field in its cause, before any version starts or any weight moves.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.kit import APP, Harness
from zdp.models import Outcome

TESTS_POLICIES = Path(__file__).with_name("gate-policies.yaml")


def _assert_nothing_changed(harness: Harness) -> None:
    assert [op for op, _ in harness.state.ops(APP)] == []
    assert harness.state.weights[APP] == {"stable": 100}


async def test_tier_naming_a_missing_gate_policy_fails_before_anything_changes(
    harness: Harness,
) -> None:
    for tier in harness.config.policy.tiers:
        tier.gate_policy = "test-lowe"
    result = await harness.deploy(harness.request("2.0.0"))
    assert result.outcome is Outcome.failed
    cause = result.cause or ""
    assert "gate-policies.yaml: policies: no gate policy named 'test-lowe'" in cause, cause
    assert "known: test-critical, test-high, test-low, test-medium" in cause
    _assert_nothing_changed(harness)


async def test_invalid_gate_policy_field_fails_before_anything_changes_naming_it(
    harness: Harness, tmp_path: Path
) -> None:
    data = yaml.safe_load(TESTS_POLICIES.read_text(encoding="utf-8"))
    data["policies"]["test-low"]["max_error_ratio"] = 2.5
    broken = tmp_path / "gate-policies.yaml"
    broken.write_text(yaml.safe_dump(data), encoding="utf-8")
    harness.config.gate_policies = str(broken)
    result = await harness.deploy(harness.request("2.0.0"))
    assert result.outcome is Outcome.failed
    cause = result.cause or ""
    assert f"{broken}: policies.test-low.max_error_ratio:" in cause, cause
    assert "less than or equal to 1" in cause
    _assert_nothing_changed(harness)


async def test_missing_gate_policy_file_fails_before_anything_changes(
    harness: Harness, tmp_path: Path
) -> None:
    harness.config.gate_policies = str(tmp_path / "nowhere.yaml")
    result = await harness.deploy(harness.request("2.0.0"))
    assert result.outcome is Outcome.failed
    assert "gate policies file not found" in (result.cause or ""), result.cause
    _assert_nothing_changed(harness)
