"""Domain pre-deployment checks: freeze windows, work in progress on the line, validation.

Each check shows in the timeline as a `domain_check` event; a blocking one ends the deployment
before anything is provisioned, with outcome `blocked` (or `rejected` at verify).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.kit import APP, PRINTED_NAMES, Harness, enrol
from zdp import deployments
from zdp.config import CalendarConfig, FreezeWindow, WorkInProgressCheck
from zdp.models import (
    DeploymentRequest,
    DeploymentResult,
    Outcome,
    Phase,
    TimelineEvent,
    ValidationReference,
)

LINE = "/api/line/status"


def _freeze_now(harness: Harness) -> None:
    now = datetime.now(UTC)
    harness.config.apps[APP].calendar = CalendarConfig(
        timezone="America/New_York",
        freeze_windows=[
            FreezeWindow(
                start=now - timedelta(hours=1),
                end=now + timedelta(hours=1),
                reason="quarter-end close",
            )
        ],
        freeze_environments=["prod"],
    )


def _line_check(harness: Harness, wait_seconds: float = 0.0, poll_seconds: float = 1.0) -> None:
    """The line check; by default a blocked production deployment ends at once (no wait)."""
    harness.config.apps[APP].work_in_progress = WorkInProgressCheck(
        path=LINE, field="batches_in_progress", id_field="batch_id", noun="batch",
        block_environments=["prod"], wait_seconds=wait_seconds, poll_seconds=poll_seconds,
        hint="finish them on the line: POST /api/batches/{id}/complete",
    )  # fmt: skip


async def _timeline_has(harness: Harness, handle: Any, kind: str, timeout: float = 60.0) -> None:
    """Wait, by the clock, until the deployment's timeline holds an event of `kind`."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        events = await handle.query("timeline", result_type=list[TimelineEvent])
        if any(e.kind == kind for e in events):
            return
        assert asyncio.get_running_loop().time() < deadline, f"no {kind} event: {events[-3:]}"
        await asyncio.sleep(0.1)


def _checks(result: DeploymentResult) -> dict[str, dict]:  # type: ignore[type-arg]
    return {e.data["name"]: e.data for e in result.timeline if e.kind == "domain_check"}


async def _deploy_approving(harness: Harness, request: DeploymentRequest) -> DeploymentResult:
    """Deploy, giving as many approvals as policy asks for (earlier tests' rollbacks count)."""
    handle = await harness.start(request)
    status = await harness.wait_for(
        handle, lambda s: s.phase in (Phase.await_approval, Phase.done) or s.phase is Phase.shift
    )
    if status.phase is Phase.await_approval:
        for approver in ["alice", "bob", "carol"][: status.approvals_required]:
            await deployments.approve(harness.client, handle.id, approver)
    return await asyncio.wait_for(handle.result(), 60)


def _nothing_changed(harness: Harness) -> None:
    assert (APP, "canary") not in harness.state.deployed
    assert harness.state.weights[APP] == {"stable": 100}
    assert not [op for op, _ in harness.state.ops(APP) if op in ("provision", "weights")]


async def test_freeze_window_blocks_production_before_anything_changes(harness: Harness) -> None:
    _freeze_now(harness)
    result = await harness.deploy(harness.request("2.0.0", environment="prod"))

    assert result.outcome is Outcome.blocked
    assert result.cause and result.cause.startswith("blocked: prod is frozen: 'quarter-end close'")
    assert "emergency override" in result.cause
    freeze = _checks(result)["freeze_window"]
    assert freeze["blocking"] is True and freeze["passed"] is False
    risk = next(e for e in result.timeline if e.kind == "risk_assessed")
    factors = {f["name"]: f for f in risk.data["factors"]}
    assert factors["freeze_window"]["points"] == 40
    _nothing_changed(harness)


async def test_freeze_window_does_not_bind_other_environments(harness: Harness) -> None:
    _freeze_now(harness)
    handle = await harness.start(harness.request("2.0.0", environment="dev"))
    # Not blocked, but the freeze still scores: the higher risk wants an approval.
    status = await harness.wait_for(handle, lambda s: s.phase is Phase.await_approval)
    assert status.risk is not None and status.risk.score >= 40
    for approver in ["alice", "bob", "carol"][: status.approvals_required]:
        await deployments.approve(harness.client, handle.id, approver)
    result = await asyncio.wait_for(handle.result(), 60)
    assert result.outcome is Outcome.promoted
    assert "it does not bind dev" in _checks(result)["freeze_window"]["detail"]


async def test_emergency_override_needs_two_distinct_approvals(harness: Harness) -> None:
    _freeze_now(harness)
    reason = "INC-4711: order router drops FIX sessions; hotfix"
    handle = await harness.start(
        harness.request("2.0.0", environment="prod", emergency_override=reason)
    )
    status = await harness.wait_for(handle, lambda s: s.phase is Phase.await_approval)
    assert status.approvals_required == 2
    await deployments.approve(harness.client, handle.id, "alice", "checked the hotfix")
    await asyncio.sleep(0.3)
    assert (await harness.status(handle)).phase is Phase.await_approval  # one is not enough
    await deployments.approve(harness.client, handle.id, "bob", "second pair of eyes")
    result = await asyncio.wait_for(handle.result(), 60)

    assert result.outcome is Outcome.promoted
    override = next(e for e in result.timeline if e.kind == "emergency_override")
    assert reason in override.message and override.actor == "ci-bot"
    assert _checks(result)["freeze_window"]["passed"] is True


async def test_batch_in_progress_blocks_production_and_shows_in_risk(harness: Harness) -> None:
    _line_check(harness)
    harness.state.app_answers[(APP, LINE)] = {
        "batches_in_progress": [{"batch_id": "B-1001"}, {"batch_id": "B-1002"}]
    }
    result = await harness.deploy(harness.request("2.0.0", environment="prod"))

    assert result.outcome is Outcome.blocked
    assert result.cause == (
        "blocked: 2 batches in progress: B-1001, B-1002; a deployment to prod waits until none "
        "is in progress (finish them on the line: POST /api/batches/{id}/complete)"
    )
    assert not [e for e in result.timeline if e.kind == "waiting"]  # wait_seconds 0: no wait
    risk = next(e for e in result.timeline if e.kind == "risk_assessed")
    factor = next(f for f in risk.data["factors"] if f["name"] == "work_in_progress")
    assert factor["points"] == 15 and "B-1001" in factor["detail"]
    _nothing_changed(harness)


async def test_production_waits_for_the_batches_to_finish_then_goes_ahead(
    harness: Harness,
) -> None:
    """Durably, with the reason and the deadline on the record; once the line is idle the
    risk is assessed again (without the batch points) and the deployment goes ahead."""
    _line_check(harness, wait_seconds=600, poll_seconds=1)
    harness.state.app_answers[(APP, LINE)] = {"batches_in_progress": [{"batch_id": "B-1001"}]}
    handle = await harness.start(harness.request("2.0.0", environment="prod"))
    await _timeline_has(harness, handle, "waiting")
    assert (APP, "canary") not in harness.state.deployed  # nothing starts while it waits
    harness.state.app_answers[(APP, LINE)] = {"batches_in_progress": []}  # the line finishes
    await _timeline_has(harness, handle, "wait_over")
    status = await harness.wait_for(handle, lambda s: s.phase is Phase.await_approval)
    for approver in ["alice", "bob", "carol"][: status.approvals_required]:
        await deployments.approve(harness.client, handle.id, approver)
    result = await asyncio.wait_for(handle.result(), 60)
    assert result.outcome is Outcome.promoted, result.cause
    waiting = next(e for e in result.timeline if e.kind == "waiting")
    assert "asking again every 1 s: 1 batch in progress: B-1001" in waiting.message
    assert waiting.data["until"] and waiting.data["poll_seconds"] == 1
    risks = [e for e in result.timeline if e.kind == "risk_assessed"]
    points = [
        next(f["points"] for f in r.data["factors"] if f["name"] == "work_in_progress")
        for r in risks
    ]
    assert points == [15, 0]


async def test_a_wait_ends_blocked_at_its_deadline_and_an_abort_ends_it_at_once(
    harness: Harness,
) -> None:
    _line_check(harness, wait_seconds=2, poll_seconds=1)
    harness.state.app_answers[(APP, LINE)] = {"batches_in_progress": [{"batch_id": "B-1001"}]}
    result = await harness.deploy(harness.request("2.0.0", environment="prod"))
    assert result.outcome is Outcome.blocked
    assert result.cause is not None and result.cause.endswith("(waited 2 s, the limit)")
    _nothing_changed(harness)

    _line_check(harness, wait_seconds=600, poll_seconds=1)
    handle = await harness.start(harness.request("2.0.1", environment="prod"))
    await _timeline_has(harness, handle, "waiting")
    await deployments.abort(harness.client, handle.id, "alice", "the batch runs all night")
    result = await asyncio.wait_for(handle.result(), 60)
    assert result.outcome is Outcome.aborted
    _nothing_changed(harness)


async def test_batch_in_progress_only_raises_risk_outside_production(harness: Harness) -> None:
    _line_check(harness)
    harness.state.app_answers[(APP, LINE)] = {"batches_in_progress": [{"batch_id": "B-1001"}]}
    result = await _deploy_approving(harness, harness.request("2.0.0", environment="dev"))
    assert result.outcome is Outcome.promoted
    assert result.status.risk is not None
    factor = next(f for f in result.status.risk.factors if f.name == "work_in_progress")
    assert (factor.points, factor.detail) == (15, "1 batch in progress: B-1001")


async def test_line_clear_lets_production_through(harness: Harness) -> None:
    _line_check(harness)
    harness.state.app_answers[(APP, LINE)] = {"batches_in_progress": []}
    result = await _deploy_approving(harness, harness.request("2.0.0", environment="prod"))
    assert result.outcome is Outcome.promoted
    assert _checks(result)["work_in_progress"]["detail"].startswith("no batch in progress")


async def test_line_that_cannot_be_asked_blocks_production(harness: Harness) -> None:
    _line_check(harness)  # no answer configured: the running version answers 404
    result = await harness.deploy(harness.request("2.0.0", environment="prod"))
    assert result.outcome is Outcome.blocked
    assert "cannot confirm that no batch is in progress" in (result.cause or "")


async def test_gxp_release_without_validation_is_refused_at_verify(harness: Harness) -> None:
    harness.config.apps[APP].environments["prod"].requires_validation = True
    result = await harness.deploy(harness.request("2.0.0", environment="prod"))
    assert result.outcome is Outcome.rejected
    assert result.cause == (
        "release rejected: webshop 2.0.0 to prod needs its validation status: the release names "
        "no validation document (zdp release create --validation-doc ID)"
    )
    _nothing_changed(harness)


async def test_gxp_release_with_pending_validation_is_refused(harness: Harness) -> None:
    harness.config.apps[APP].environments["prod"].requires_validation = True
    pending = ValidationReference(document_id="VAL-2026-0142", status="pending")
    request = harness.request("2.0.0", environment="prod")
    request.release = harness.signer.release("2.0.0", validation=pending)
    result = await harness.deploy(request)
    assert result.outcome is Outcome.rejected
    assert "validation document VAL-2026-0142 is pending" in (result.cause or "")


async def test_gxp_release_approved_on_the_authors_word_is_refused(harness: Harness) -> None:
    """`status: approved` without a validation approver's signature is nobody's approval."""
    harness.config.apps[APP].environments["prod"].requires_validation = True
    ref = ValidationReference(document_id="VAL-2026-0142", status="approved")
    request = harness.request("2.0.0", environment="prod")
    request.release = harness.signer.release("2.0.0", validation=ref)
    result = await harness.deploy(request)
    assert result.outcome is Outcome.rejected
    assert "validation document VAL-2026-0142: it is not signed" in (result.cause or "")
    _nothing_changed(harness)


async def test_gxp_release_with_validation_is_verified_and_recorded(
    harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = tmp_path / "approvers"
    monkeypatch.setenv("ZDP_APPROVER_REGISTRY", str(registry))
    bob = Ed25519PrivateKey.generate()
    enrol(registry, "bob", PRINTED_NAMES["bob"], bob.public_key())
    harness.config.apps[APP].environments["prod"].requires_validation = True
    request = harness.request("2.0.0", environment="prod")
    request.release = harness.signer.validated("2.0.0", "bob", bob)
    result = await _deploy_approving(harness, request)
    assert result.outcome is Outcome.promoted
    check = _checks(result)["validation"]
    assert check["passed"] and "VAL-2026-0142" in check["detail"]
    assert "signed by Robert B. Example — IQ/OQ/PQ executed and approved" in check["detail"]
