"""A healthy release is promoted, by canary steps or by a blue-green switch."""

from __future__ import annotations

from temporalio.client import WorkflowExecutionStatus

from tests.kit import APP, Harness
from zdp.models import Outcome, Strategy
from zdp.temporal import SA_OUTCOME, SA_PHASE, SA_RISK_SCORE, SA_VERSION


async def test_healthy_canary_walks_every_step_and_promotes(harness: Harness) -> None:
    result = await harness.deploy(harness.request("2.0.0"))

    assert result.outcome is Outcome.promoted, result.cause
    weights = [d for op, d in harness.state.ops(APP) if op == "weights"]
    assert weights == [
        "canary=1,stable=99",
        "canary=5,stable=95",
        "canary=25,stable=75",
        "canary=100,stable=0",
        "canary=0,stable=100",
    ]
    # The new version is stable, the old one and the canary slot are gone.
    assert harness.state.deployed[(APP, "stable")].version == "2.0.0"
    assert (APP, "canary") not in harness.state.deployed
    assert harness.state.weights[APP] == {"canary": 0, "stable": 100}
    # The new version was started for its target environment (what the app reads as APP_ENV),
    # in the canary slot and again when the stable slot was rebuilt on it.
    assert harness.state.app_envs[(APP, "canary")] == "dev"
    assert harness.state.app_envs[(APP, "stable")] == "dev"

    phases = [e.message.split(":")[0] for e in result.timeline if e.kind == "phase"]
    assert phases == ["verify", "assess_risk", "provision", "shift", "promote", "done"]
    verdicts = [e for e in result.timeline if e.kind == "gate_verdict"]
    assert len(verdicts) == 4 and all(v.data["result"] == "pass" for v in verdicts)
    assert all(v.data["evidence"]["samples"] >= 2 for v in verdicts)


async def test_search_attributes_let_operators_find_the_deployment(harness: Harness) -> None:
    handle = await harness.start(harness.request("2.0.1"))
    await handle.result()
    desc = await handle.describe()
    attrs = desc.typed_search_attributes
    assert desc.status == WorkflowExecutionStatus.COMPLETED
    assert attrs.get(SA_PHASE) == "done"
    assert attrs.get(SA_OUTCOME) == "promoted"
    assert attrs.get(SA_VERSION) == "2.0.1"
    assert attrs.get(SA_RISK_SCORE) is not None


async def test_healthy_blue_green_switches_at_once_and_retires_old_colour(
    harness: Harness,
) -> None:
    harness.state.weights[APP] = {"blue": 100, "green": 0}
    result = await harness.deploy(harness.request("2.0.0", strategy=Strategy.blue_green))

    assert result.outcome is Outcome.promoted, result.cause
    assert [d for op, d in harness.state.ops(APP) if op == "weights"] == ["blue=0,green=100"]
    assert harness.state.deployed[(APP, "green")].version == "2.0.0"
    assert (APP, "blue") not in harness.state.deployed
    gates = [e.message for e in result.timeline if e.kind == "gate_verdict"]
    assert len(gates) == 2
    assert gates[0].startswith("pre-switch gate on green: pass")
    assert gates[1].startswith("post-switch watch on green: pass")


async def test_what_the_runtime_says_about_a_start_is_on_the_timeline(harness: Harness) -> None:
    """How the new version's process is confined (or that it is not) is part of the record."""
    harness.state.provision_notes.append("not confined: ZDP_APP_CONFINEMENT=none")
    result = await harness.deploy(harness.request("2.0.2"))
    assert result.outcome is Outcome.promoted, result.cause
    provisioned = next(e for e in result.timeline if e.kind == "provisioned")
    assert provisioned.message.endswith("; not confined: ZDP_APP_CONFINEMENT=none")
    assert provisioned.data["notes"] == ["not confined: ZDP_APP_CONFINEMENT=none"]


async def test_every_platform_change_names_its_environment(harness: Harness) -> None:
    """Provisions, retirements and weight changes, the rollback's included, go to the target
    environment's own slots (the embedded stack runs staging and production side by side)."""
    result = await harness.deploy(harness.request("2.0.3"))
    assert result.outcome is Outcome.promoted, result.cause
    assert harness.state.scopes, "nothing was changed through an environment's view"
    assert {scope for _, scope in harness.state.scopes} == {"dev"}
    assert {op for op, _ in harness.state.scopes} == {"provision", "retire", "weights"}
