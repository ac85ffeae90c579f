"""Policy: turn a risk assessment into approvals, traffic steps, bake time and a health gate.

`decide` is pure. The property it protects is monotonicity: for the same app, environment and
request, a higher score never yields fewer approvals, a shorter bake or a looser gate. The
tiers' own ordering is checked when the configuration loads (zdp.config.PolicyConfig); the
gate policies the tiers name are checked against each other here, with the app's overrides,
because they live in another file (gate-policies.yaml).
"""

from __future__ import annotations

from zdp.compliance.profiles import SIGNATURE_PROFILES
from zdp.config import EngineConfig, EnvironmentConfig, PolicyTier
from zdp.errors import ConfigError
from zdp.gates import GatePolicy
from zdp.health.policy import GatePolicies, check_tightening, thresholds_of
from zdp.models import ApproverIdentity, PolicyDecision, RiskAssessment, RiskLevel

# Tiers at these levels never let a request skip their smallest first traffic step.
_GUARDED_FIRST_STEP = frozenset({RiskLevel.high, RiskLevel.critical})


def _check_requested_steps(steps: list[int]) -> None:
    if not steps or steps[-1] != 100:
        raise ValueError(f"requested steps must end at 100, got {steps}")
    if any(not 0 < s <= 100 for s in steps) or steps != sorted(set(steps)):
        raise ValueError(
            f"requested steps must be strictly increasing percentages from 1 to 100, got {steps}"
        )


def traffic_steps(tier: PolicyTier, requested_steps: list[int] | None) -> list[int]:
    """The request's steps or the tier's; at high risk, never a coarser first step than the tier."""
    if requested_steps is None:
        return list(tier.steps)
    _check_requested_steps(requested_steps)
    steps = list(requested_steps)
    first = tier.steps[0]
    if tier.level in _GUARDED_FIRST_STEP and steps[0] > first:
        steps.insert(0, first)
    return steps


def _percent(ratio: float) -> str:
    return f"{ratio * 100:g}%"


def decide(
    assessment: RiskAssessment,
    config: EngineConfig,
    app: str,
    environment: str,
    requested_steps: list[int] | None,
    requested_bake_seconds: float | None,
    gate_policies: GatePolicies,
) -> PolicyDecision:
    """What deploying at this risk to `app`/`environment` requires.

    Raises ConfigError when the app or environment is unknown, when the environment lists
    too few approvers to ever satisfy the requirement, or when a tier names a gate policy that
    does not exist or is looser than a lower tier's (such a deployment is refused up front).
    """
    env = config.environment(app, environment)
    tier = config.policy.tier_for(assessment.score)

    approvals = max(tier.approvals_required, env.min_approvals)
    if approvals > len(env.approvers):
        raise ConfigError(
            f"app '{app}' environment '{environment}' needs {approvals} approvals at score "
            f"{assessment.score} ({tier.level.value}) but lists only {len(env.approvers)} "
            "approvers: add approvers to apps.yaml or reduce the change's risk"
        )
    if requested_bake_seconds is not None and requested_bake_seconds < 0:
        raise ValueError(f"requested bake cannot be negative, got {requested_bake_seconds}")
    bake = max(requested_bake_seconds or 0.0, tier.min_bake_seconds)
    policy = tier_gate_policies(config, gate_policies, app, environment)[tier.level]
    gate = thresholds_of(policy)

    noun = "approval" if approvals == 1 else "approvals"
    rationale = (
        f"score {assessment.score} ({tier.level.value}): {approvals} {noun}, "
        f"≥{tier.min_bake_seconds:g} s bake per step, "
        f"gate policy '{tier.gate_policy}', error budget {_percent(gate.max_error_ratio)}"
    )
    return PolicyDecision(
        approvals_required=approvals,
        allowed_approvers=list(env.approvers),
        steps=traffic_steps(tier, requested_steps),
        bake_seconds=bake,
        gate=gate,
        rationale=rationale,
        gate_policy_name=tier.gate_policy,
        gate_policy=policy,
    )


def tier_gate_policies(
    config: EngineConfig, gate_policies: GatePolicies, app: str, environment: str
) -> dict[RiskLevel, GatePolicy]:
    """The gate policy of every tier for `app`/`environment`, checked to tighten with risk."""
    resolved = [
        (t, gate_policies.for_deployment(app, environment, t.gate_policy))
        for t in config.policy.tiers
    ]
    check_tightening(
        [(f"{t.level.value} tier's gate policy '{t.gate_policy}'", p) for t, p in resolved],
        f"{gate_policies.source}: for {app}/{environment}: ",
    )
    return {t.level: p for t, p in resolved}


def with_approvals_floor(
    decision: PolicyDecision, floor: int, app: str, environment: str
) -> PolicyDecision:
    """An emergency override inside a freeze window needs at least `floor` approvals."""
    if floor <= decision.approvals_required:
        return decision
    if floor > len(decision.allowed_approvers):
        raise ConfigError(
            f"an emergency override of {app} {environment} needs {floor} "
            f"approvals but only {len(decision.allowed_approvers)} approvers are listed"
        )
    return decision.model_copy(
        update={
            "approvals_required": floor,
            "rationale": f"{decision.rationale}; emergency override in a freeze window: "
            f"{floor} approvals",
        }
    )


def part11_signers(
    env: EnvironmentConfig,
    decision: PolicyDecision,
    registry: dict[str, ApproverIdentity],
) -> dict[str, ApproverIdentity] | None:
    """Where a profile asks for Part 11 signatures: the allowed approvers' registered keys.

    Refused up front when too few approvers have registered a key to ever approve."""
    profiles = SIGNATURE_PROFILES.intersection(env.compliance_profiles)
    if not profiles:
        return None
    # Part 11 signers: people registered with a passphrase-encrypted key (§11.200(a)(1)).
    signers = {
        u: registry[u]
        for u in decision.allowed_approvers
        if u in registry and registry[u].kind == "person" and registry[u].encrypted_key
    }
    if len(signers) < decision.approvals_required:
        raise ConfigError(
            f"{', '.join(sorted(profiles))} needs {decision.approvals_required} signed "
            f"approvals but only {len(signers)} of the approvers "
            f"({', '.join(decision.allowed_approvers)}) have a registered signing key: "
            "an administrator registers them with `zdp keys register-approver USER --key "
            "FILE --printed-name NAME` (a passphrase-encrypted key)"
        )
    return signers
