"""The engine's metrics (zdp.metrics) as a deployment moves: what an operator's Prometheus sees.

Counters are read as deltas: every test of this module shares the worker's process registry.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from tests.kit import APP, HISTORIES, Harness
from workflows.deployment import DeploymentWorkflow
from zdp import deployments
from zdp.metrics import REGISTRY, DeploymentObserver
from zdp.models import Outcome, Phase


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def running_phases(app: str, environment: str) -> list[str]:
    """The phases zdp_deployment_phase shows for the app's running deployment."""
    return [
        s.labels["phase"]
        for m in REGISTRY.collect()
        if m.name == "zdp_deployment_phase"
        for s in m.samples
        if s.labels["app"] == app and s.labels["environment"] == environment and s.value == 1
    ]


async def test_a_promoted_canary_counts_once_with_its_verdicts_and_final_weights(
    harness: Harness,
) -> None:
    labels = {"app": APP, "environment": "dev", "strategy": "canary"}
    started = value("zdp_deployments_started_total", **labels)
    promoted = value("zdp_deployments_total", **labels, outcome="promoted")
    passes = value(
        "zdp_gate_verdicts_total", app=APP, environment="dev", result="pass", source="all"
    )
    durations = value("zdp_deployment_duration_seconds_count", **labels, outcome="promoted")
    appends = value("zdp_audit_appends_total", backend="file")
    seals = value("zdp_evidence_seal_seconds_count")

    result = await harness.deploy(harness.request("2.0.0"))

    assert result.outcome is Outcome.promoted, result.cause
    assert value("zdp_deployments_started_total", **labels) == started + 1
    assert value("zdp_deployments_total", **labels, outcome="promoted") == promoted + 1
    verdicts = [e for e in result.timeline if e.kind == "gate_verdict"]
    assert value(
        "zdp_gate_verdicts_total", app=APP, environment="dev", result="pass", source="all"
    ) == passes + len(verdicts)
    assert value("zdp_deployment_duration_seconds_count", **labels, outcome="promoted") == (
        durations + 1
    )
    # The weights as the deployment left them, as a share of traffic.
    ratio = {"app": APP, "environment": "dev"}
    assert value("zdp_deployment_traffic_ratio", **ratio, slot="stable") == 1.0
    assert value("zdp_deployment_traffic_ratio", **ratio, slot="canary") == 0.0
    # A finished deployment shows no phase.
    assert running_phases(APP, "dev") == []
    assert value("zdp_audit_appends_total", backend="file") > appends
    assert value("zdp_evidence_seal_seconds_count") == seals + 1


async def test_a_rollback_counts_the_failing_source_compensations_and_containment(
    harness: Harness,
) -> None:
    where = {"app": APP, "environment": "dev"}
    rolled = value("zdp_deployments_total", **where, strategy="canary", outcome="rolled_back")
    fails = value("zdp_gate_verdicts_total", **where, result="fail", source="errors")
    traffic = value("zdp_compensations_total", **where, kind="traffic")
    retire = value("zdp_compensations_total", **where, kind="retire")
    contained = value("zdp_detection_to_containment_seconds_count", **where)

    harness.state.fail_at_weight[(APP, "2.0.0")] = 5
    result = await harness.deploy(harness.request("2.0.0"))

    assert result.outcome is Outcome.rolled_back
    assert value("zdp_deployments_total", **where, strategy="canary", outcome="rolled_back") == (
        rolled + 1
    )
    assert value("zdp_gate_verdicts_total", **where, result="fail", source="errors") == fails + 1
    assert value("zdp_compensations_total", **where, kind="traffic") == traffic + 1
    assert value("zdp_compensations_total", **where, kind="retire") == retire + 1
    assert value("zdp_detection_to_containment_seconds_count", **where) == contained + 1
    assert value("zdp_deployment_traffic_ratio", **where, slot="stable") == 1.0


async def test_a_deployment_waiting_for_approval_shows_its_phase_and_deadline(
    harness: Harness,
) -> None:
    where = {"app": APP, "environment": "prod"}
    approved = value("zdp_approval_wait_seconds_count", **where, result="approved")
    handle = await harness.start(harness.request("3.0.0", environment="prod"))
    await harness.wait_for(handle, lambda s: s.phase is Phase.await_approval)

    assert running_phases(APP, "prod") == ["await_approval"]
    deadline = value("zdp_approval_deadline_timestamp_seconds", **where)
    # The request's default deadline is four hours after the phase began.
    assert abs(deadline - (datetime.now(UTC) + timedelta(hours=4)).timestamp()) < 600

    await deployments.approve(harness.client, handle.id, "bob", "reviewed CHG-1001")
    result = await asyncio.wait_for(handle.result(), 60)
    assert result.outcome is Outcome.promoted
    assert value("zdp_approval_wait_seconds_count", **where, result="approved") == approved + 1
    assert REGISTRY.get_sample_value("zdp_approval_deadline_timestamp_seconds", where) is None
    assert running_phases(APP, "prod") == []


async def test_replaying_a_history_counts_nothing() -> None:
    """A worker that takes a deployment over replays its history: nothing is counted twice."""
    path = HISTORIES / "test_healthy_canary_walks_every_step_and_promotes-0.json"
    history = WorkflowHistory.from_json("replayed", json.loads(path.read_text()))
    before = counted()
    replayer = Replayer(workflows=[DeploymentWorkflow], data_converter=pydantic_data_converter)
    await replayer.replay_workflow(history)
    after = counted()
    assert {k: v for k, v in after.items() if before.get(k, 0.0) != v} == {}


def counted() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every counter and histogram sample of the registry (not their creation times)."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for m in REGISTRY.collect()
        if m.type in ("counter", "histogram")
        for s in m.samples
        if not s.name.endswith("_created")
    }


def test_an_observer_error_never_reaches_the_workflow() -> None:
    observer = DeploymentObserver("app", "env", "canary")
    # A malformed event (weights that are not numbers) is logged, not raised.
    observer.observe("weights", "shift", datetime.now(UTC), {"weights": {"canary": "x"}}, live=True)


async def test_the_running_gates_figures_are_live_and_a_rollback_shows_its_containment(
    harness: Harness,
) -> None:
    """What `zdp status` and `zdp deploy --wait` show people: the running gate's figures, and
    after a rollback the time from the failing verdict to the traffic back."""
    handle = await harness.start(harness.request("2.0.0", bake_seconds=30))
    await harness.wait_for(handle, lambda s: s.weights.get("canary") == 1)
    deadline = asyncio.get_running_loop().time() + 30
    figures = await deployments.live_gate(harness.client, handle.id)
    while not (figures and figures.get("samples")):
        assert asyncio.get_running_loop().time() < deadline, figures
        await asyncio.sleep(0.2)
        figures = await deployments.live_gate(harness.client, handle.id)
    line = deployments.gate_line(figures)
    assert "s into the bake" in line and "probes" in line, line
    await deployments.abort(harness.client, handle.id, "bob", "enough")
    result = await asyncio.wait_for(handle.result(), 60)
    assert result.outcome is Outcome.rolled_back
    assert await deployments.live_gate(harness.client, handle.id) is None
    # An abort is no failing verdict: there was nothing to contain.
    assert deployments.containment_seconds(result.timeline) is None

    harness.state.fail_at_weight[(APP, "2.0.1")] = 5
    failed = await harness.deploy(harness.request("2.0.1"))
    contained = deployments.containment_seconds(failed.timeline)
    verdict = next(e for e in failed.timeline if e.data.get("result") == "fail")
    back = next(
        e for e in failed.timeline if e.kind == "compensated" and e.data["kind"] == "traffic"
    )
    assert contained == (back.at - verdict.at).total_seconds()


async def test_an_operators_pause_shows_as_the_paused_phase_until_resumed(
    harness: Harness,
) -> None:
    handle = await harness.start(harness.request("2.0.2", bake_seconds=30))
    await harness.wait_for(handle, lambda s: s.weights.get("canary") == 1)
    assert running_phases(APP, "dev") == ["shift"]
    await deployments.pause(harness.client, handle.id, "dave", "investigating INC-9")
    await harness.wait_for(handle, lambda s: s.paused)
    assert running_phases(APP, "dev") == ["paused"]
    await deployments.resume(harness.client, handle.id, "erin")
    await harness.wait_for(handle, lambda s: not s.paused)
    assert running_phases(APP, "dev") == ["shift"]
    await deployments.promote(harness.client, handle.id, "bob", "done watching")
    assert (await asyncio.wait_for(handle.result(), 60)).outcome is Outcome.promoted
    assert running_phases(APP, "dev") == []
    # Every outcome of the app's deployments is a series from its first start on (at 0 until
    # it happens; other modules in this process may have counted some).
    labels = {"app": APP, "environment": "dev", "strategy": "canary"}
    for outcome in ("blocked", "expired", "failed"):
        found = REGISTRY.get_sample_value("zdp_deployments_total", {**labels, "outcome": outcome})
        assert found is not None, outcome
