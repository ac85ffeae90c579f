"""Approvals: separation of duties, allowed approvers, quorum for high risk, expiry, refusal."""

from __future__ import annotations

import asyncio

import pytest

from tests.kit import Harness
from zdp import deployments
from zdp.models import ApprovalInput, Outcome, Phase


async def _awaiting(harness: Harness, **overrides: object):  # type: ignore[no-untyped-def]
    handle = await harness.start(harness.request("3.0.0", environment="prod", **overrides))
    await harness.wait_for(handle, lambda s: s.phase is Phase.await_approval)
    return handle


def _high_risk_release(harness: Harness):  # type: ignore[no-untyped-def]
    return harness.signer.release(
        "3.0.0",
        migrations=True,
        lines_changed=5000,
        files_changed=80,
        config_changed=True,
        dependencies_changed=True,
    )


async def test_self_approval_is_refused(harness: Harness) -> None:
    handle = await _awaiting(harness, initiator="alice")
    with pytest.raises(deployments.RequestRefused, match="alice started this deployment"):
        await deployments.approve(harness.client, handle.id, "alice")
    status = await harness.status(handle)
    assert status.phase is Phase.await_approval and status.approvals == []


async def test_unknown_approver_is_refused(harness: Harness) -> None:
    handle = await _awaiting(harness)
    with pytest.raises(deployments.RequestRefused, match="mallory is not an approver"):
        await deployments.approve(harness.client, handle.id, "mallory")


async def test_one_approval_releases_a_medium_risk_deployment(harness: Harness) -> None:
    handle = await _awaiting(harness)
    message = await deployments.approve(harness.client, handle.id, "bob", "reviewed CHG-1001")
    assert message == "approved by bob (1 of 1)"
    result = await asyncio.wait_for(handle.result(), 60)
    assert result.outcome is Outcome.promoted
    assert [a.approver for a in result.status.approvals] == ["bob"]


async def test_duplicate_decision_and_decision_after_settling_are_refused(
    harness: Harness,
) -> None:
    handle = await _awaiting(harness, release=_high_risk_release(harness))
    status = await harness.status(handle)
    assert status.approvals_required >= 2, status.risk
    await deployments.approve(harness.client, handle.id, "bob")
    with pytest.raises(deployments.RequestRefused, match="bob has already decided"):
        await deployments.approve(harness.client, handle.id, "bob")


async def test_high_risk_needs_two_distinct_approvers(harness: Harness) -> None:
    handle = await _awaiting(harness, release=_high_risk_release(harness))
    status = await harness.status(handle)
    assert status.approvals_required == 2, status.risk

    await deployments.approve(harness.client, handle.id, "bob")
    await asyncio.sleep(0.3)
    assert (await harness.status(handle)).phase is Phase.await_approval  # 1 of 2: still waiting
    await deployments.approve(harness.client, handle.id, "carol")
    result = await asyncio.wait_for(handle.result(), 60)
    assert result.outcome is Outcome.promoted
    assert sorted(a.approver for a in result.status.approvals) == ["bob", "carol"]


async def test_rejection_ends_the_deployment_before_anything_is_provisioned(
    harness: Harness,
) -> None:
    handle = await _awaiting(harness)
    await deployments.reject(harness.client, handle.id, "carol", "freeze for audit")
    result = await asyncio.wait_for(handle.result(), 30)
    assert result.outcome is Outcome.rejected
    assert result.cause == "rejected by carol: freeze for audit"
    assert not [op for op in harness.state.ops("webshop") if op[0] == "provision"]


async def test_approval_deadline_expires_the_deployment(harness: Harness) -> None:
    handle = await harness.start(
        harness.request("3.0.0", environment="prod", approval_timeout_seconds=1.0)
    )
    result = await asyncio.wait_for(handle.result(), 30)
    assert result.outcome is Outcome.expired
    assert result.cause and "no decision within 1 s" in result.cause


async def test_refused_signal_is_recorded_in_the_timeline_and_changes_nothing(
    harness: Harness,
) -> None:
    handle = await _awaiting(harness)
    await handle.signal("approve_signal", ApprovalInput(approver="ci-bot"))
    await handle.signal("approve_signal", ApprovalInput(approver="alice"))
    result = await asyncio.wait_for(handle.result(), 60)

    refused = [e for e in result.timeline if e.kind == "decision_refused"]
    assert len(refused) == 1
    assert "ci-bot started this deployment" in refused[0].message
    assert result.outcome is Outcome.promoted
    assert [a.approver for a in result.status.approvals] == ["alice"]


async def test_waiting_deployment_is_found_by_search_attributes(harness: Harness) -> None:
    handle = await _awaiting(harness)
    query = (
        'ZdpApp = "webshop" AND ZdpEnvironment = "prod" AND ZdpPhase = "await_approval" '
        'AND ExecutionStatus = "Running"'
    )
    found: list[str] = []
    for _ in range(50):  # visibility is eventually consistent
        found = [w.id async for w in harness.client.list_workflows(query)]
        if found:
            break
        await asyncio.sleep(0.1)
    assert found == [handle.id]


async def test_second_deployment_of_same_app_and_environment_is_refused(
    harness: Harness,
) -> None:
    handle = await _awaiting(harness)
    with pytest.raises(deployments.DeploymentInProgress, match="already in progress"):
        await harness.start(harness.request("3.0.1", environment="prod"))
    await deployments.abort(harness.client, handle.id, "carol")
    result = await asyncio.wait_for(handle.result(), 30)
    assert result.outcome is Outcome.aborted
