"""Policy decisions: tiers, approval floors, steps and bake, and monotonicity in the score."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zdp.config import EngineConfig, load_config
from zdp.errors import ConfigError
from zdp.health.policy import GatePolicies, load_gate_policies, parse_gate_policies
from zdp.models import PolicyDecision, RiskAssessment
from zdp.policy import decide
from zdp.risk import level_for

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "infrastructure/canary-deployments/apps.yaml"
GATES = load_gate_policies(REPO / "infrastructure/health-checks/gate-policies.yaml")
TARGETS = [
    ("finance-trading", "staging"),
    ("finance-trading", "production"),
    ("pharma-manufacturing", "staging"),
    ("pharma-manufacturing", "production"),
]


@pytest.fixture(scope="module")
def engine() -> EngineConfig:
    return load_config(SHIPPED)


def scored(score: int) -> RiskAssessment:
    return RiskAssessment(score=score, level=level_for(score), factors=[])


def decide_for(
    engine: EngineConfig,
    score: int,
    target: tuple[str, str] = ("finance-trading", "production"),
    steps: list[int] | None = None,
    bake: float | None = None,
    gates: GatePolicies = GATES,
) -> PolicyDecision:
    return decide(scored(score), engine, target[0], target[1], steps, bake, gates)


# --------------------------------------------------------------------------- concrete decisions


def test_high_score_follows_the_high_tier(engine: EngineConfig) -> None:
    decision = decide_for(engine, 61)
    assert decision.approvals_required == 2
    assert decision.allowed_approvers == ["alice", "bob", "carol", "dave", "erin"]
    assert decision.steps == [1, 5, 25, 50, 100]
    assert decision.bake_seconds == 300
    assert decision.gate.max_error_ratio == 0.005
    assert decision.gate_policy_name == "high"
    assert decision.gate_policy is not None
    assert decision.gate_policy.sample_path == "/api/quote/AAPL"  # finance's override
    assert decision.gate.min_samples == decision.gate_policy.min_samples
    assert decision.rationale == (
        "score 61 (high): 2 approvals, ≥300 s bake per step, gate policy 'high', error budget 0.5%"
    )


def test_tier_naming_an_unknown_gate_policy_is_refused_naming_it(engine: EngineConfig) -> None:
    data: dict[str, Any] = engine.model_dump(mode="json")
    data["policy"]["tiers"][2]["gate_policy"] = "hihg"
    config = EngineConfig.model_validate(data)
    with pytest.raises(ConfigError, match=r"no gate policy named 'hihg' \(known: .*high"):
        decide_for(config, 61)


def test_gate_policies_loosening_with_risk_are_refused_before_anything_starts(
    engine: EngineConfig,
) -> None:
    data: dict[str, Any] = engine.model_dump(mode="json")
    data["policy"]["tiers"][3]["gate_policy"] = "low"  # critical tier, low tier's policy
    config = EngineConfig.model_validate(data)
    with pytest.raises(ConfigError, match=r"critical tier's gate policy 'low'.max_error_ratio"):
        decide_for(config, 10)


def test_critical_score_follows_the_critical_tier(engine: EngineConfig) -> None:
    decision = decide_for(engine, 100)
    assert (decision.approvals_required, decision.bake_seconds) == (3, 600)
    assert decision.steps == [1, 2, 5, 10, 25, 50, 100]
    assert decision.rationale.endswith(
        "3 approvals, ≥600 s bake per step, gate policy 'critical', error budget 0.2%"
    )


def test_environment_floor_raises_the_tier_requirement(engine: EngineConfig) -> None:
    assert decide_for(engine, 0, ("finance-trading", "staging")).approvals_required == 0
    production = decide_for(engine, 0, ("finance-trading", "production"))
    assert production.approvals_required == 1
    assert production.rationale.startswith("score 0 (low): 1 approval,")


def test_environment_that_cannot_meet_the_requirement_is_refused(
    engine: EngineConfig,
) -> None:
    data: dict[str, Any] = engine.model_dump(mode="json")
    data["apps"]["pharma-manufacturing"]["environments"]["staging"]["approvers"] = ["alice"]
    few = EngineConfig.model_validate(data)
    assert decide_for(few, 30, ("pharma-manufacturing", "staging")).approvals_required == 1
    with pytest.raises(ConfigError) as info:
        decide_for(few, 60, ("pharma-manufacturing", "staging"))
    assert str(info.value) == (
        "app 'pharma-manufacturing' environment 'staging' needs 2 approvals at score 60 (high) "
        "but lists only 1 approvers: add approvers to apps.yaml or reduce the change's risk"
    )


def test_unknown_app_or_environment_is_a_config_error(engine: EngineConfig) -> None:
    with pytest.raises(ConfigError, match="unknown app 'trading'"):
        decide_for(engine, 10, ("trading", "production"))
    with pytest.raises(ConfigError, match="has no environment 'qa'"):
        decide_for(engine, 10, ("finance-trading", "qa"))


def test_requested_bake_may_lengthen_but_never_shorten(engine: EngineConfig) -> None:
    assert decide_for(engine, 30, bake=10).bake_seconds == 120
    assert decide_for(engine, 30, bake=900).bake_seconds == 900
    assert decide_for(engine, 30, bake=0).bake_seconds == 120


def test_requested_steps_are_used_as_given_at_low_and_medium_risk(engine: EngineConfig) -> None:
    assert decide_for(engine, 10, steps=[50, 100]).steps == [50, 100]
    assert decide_for(engine, 40, steps=[25, 100]).steps == [25, 100]


def test_high_risk_keeps_the_tiers_first_step(engine: EngineConfig) -> None:
    assert decide_for(engine, 60, steps=[25, 100]).steps == [1, 25, 100]
    assert decide_for(engine, 90, steps=[10, 50, 100]).steps == [1, 10, 50, 100]
    assert decide_for(engine, 90, steps=[1, 100]).steps == [1, 100]


@pytest.mark.parametrize("steps", [[], [5, 50], [50, 5, 100], [0, 100], [5, 5, 100]])
def test_malformed_requested_steps_are_refused(engine: EngineConfig, steps: list[int]) -> None:
    with pytest.raises(ValueError, match="requested steps"):
        decide_for(engine, 10, steps=steps)


# --------------------------------------------------------------------------- properties

requested_steps = st.none() | st.sets(st.integers(1, 99), max_size=6).map(
    lambda s: [*sorted(s), 100]
)
requested_bake = st.none() | st.floats(0, 2_000, allow_nan=False)


def _assert_not_laxer(lower: PolicyDecision, higher: PolicyDecision) -> None:
    assert higher.approvals_required >= lower.approvals_required
    assert higher.bake_seconds >= lower.bake_seconds
    assert higher.gate.max_error_ratio <= lower.gate.max_error_ratio


def _assert_steps_well_formed(steps: list[int]) -> None:
    assert steps[-1] == 100
    assert all(0 < a < b for a, b in itertools.pairwise(steps))


@settings(max_examples=200, deadline=None)
@given(
    scores=st.lists(st.integers(0, 100), min_size=2, max_size=2).map(sorted),
    target=st.sampled_from(TARGETS),
    steps=requested_steps,
    bake=requested_bake,
)
def test_higher_score_is_never_laxer(
    engine: EngineConfig,
    scores: list[int],
    target: tuple[str, str],
    steps: list[int] | None,
    bake: float | None,
) -> None:
    low = decide_for(engine, scores[0], target, steps, bake)
    high = decide_for(engine, scores[1], target, steps, bake)
    _assert_not_laxer(low, high)
    _assert_steps_well_formed(low.steps)
    _assert_steps_well_formed(high.steps)


@st.composite
def policies(draw: st.DrawFn) -> dict[str, Any]:
    """A random policy that passes validation: tiers tighten as the score rises."""
    count = draw(st.integers(1, 4))
    bounds = sorted(draw(st.sets(st.integers(0, 99), min_size=count - 1, max_size=count - 1)))
    approvals, bake, ratio = 0, 0.0, 0.05
    tiers = []
    gates: dict[str, float] = {}
    levels = ["low", "medium", "high", "critical"][-count:]
    for level, max_score in zip(levels, [*bounds, 100], strict=True):
        approvals += draw(st.integers(0, 1))
        bake += draw(st.floats(0, 300, allow_nan=False))
        ratio -= draw(st.floats(0, 0.01, allow_nan=False))
        gates[level] = ratio
        steps = [*sorted(draw(st.sets(st.integers(1, 99), max_size=5))), 100]
        tiers.append(
            {
                "level": level,
                "max_score": max_score,
                "approvals_required": approvals,
                "min_bake_seconds": bake,
                "steps": steps,
                "gate_policy": f"p-{level}",
            }
        )
    return {"tiers": tiers, "gates": gates}


@settings(max_examples=200, deadline=None)
@given(
    policy=policies(),
    floor=st.integers(0, 2),
    scores=st.lists(st.integers(0, 100), min_size=2, max_size=2).map(sorted),
    steps=requested_steps,
    bake=requested_bake,
)
def test_any_valid_policy_is_monotonic_in_the_score(
    engine: EngineConfig,
    policy: dict[str, Any],
    floor: int,
    scores: list[int],
    steps: list[int] | None,
    bake: float | None,
) -> None:
    data: dict[str, Any] = engine.model_dump(mode="json")
    gates = parse_gate_policies(
        {
            "policies": {
                f"p-{level}": {
                    "probe_interval_seconds": 0.05,
                    "breaker_failure_threshold": 3,
                    "breaker_open_seconds": 1.0,
                    "min_samples": 10,
                    "max_error_ratio": ratio,
                }
                for level, ratio in policy.pop("gates").items()
            }
        }
    )
    data["policy"] = policy
    production = data["apps"]["finance-trading"]["environments"]["production"]
    production["min_approvals"] = floor
    if floor == 0:  # sox and pci-dss demand at least one approval
        production["compliance_profiles"] = []
    config = EngineConfig.model_validate(data)
    low = decide_for(config, scores[0], steps=steps, bake=bake, gates=gates)
    high = decide_for(config, scores[1], steps=steps, bake=bake, gates=gates)
    _assert_not_laxer(low, high)
    assert low.approvals_required >= floor
    _assert_steps_well_formed(low.steps)
    _assert_steps_well_formed(high.steps)
