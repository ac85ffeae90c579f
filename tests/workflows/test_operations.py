"""Operators steer a running deployment: pause, resume, promote early; workers come and go."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.kit import APP, Harness
from zdp import deployments
from zdp.models import AbortInput, Outcome, Phase
from zdp.release import sign_manifest
from zdp.temporal import SA_PHASE


async def test_pause_holds_the_current_weight_until_resumed(harness: Harness) -> None:
    handle = await harness.start(harness.request("2.0.0", bake_seconds=0.3))
    await harness.wait_for(handle, lambda s: s.weights.get("canary") == 1)
    await deployments.send_signal(harness.client, handle.id, "pause", AbortInput(actor="oncall"))
    held = await harness.wait_for(handle, lambda s: s.paused)
    await asyncio.sleep(1.0)  # three bakes' worth: a running deployment would have moved on
    still = await harness.status(handle)
    assert still.paused and still.weights == held.weights and still.step_index == held.step_index

    await deployments.send_signal(harness.client, handle.id, "resume", AbortInput(actor="oncall"))
    result = await asyncio.wait_for(handle.result(), 60)
    assert result.outcome is Outcome.promoted
    kinds = [e.kind for e in result.timeline]
    assert kinds.index("paused") < kinds.index("resumed")


async def test_a_paused_deployment_shows_paused_in_its_phase_attribute(harness: Harness) -> None:
    """The saved query for paused deployments (ZdpPhase = "paused") finds an operator's pause,
    and a resume puts the phase back."""
    handle = await harness.start(harness.request("2.0.0", bake_seconds=30))
    await harness.wait_for(handle, lambda s: s.weights.get("canary") == 1)
    await deployments.pause(harness.client, handle.id, "dave", "investigating INC-9")
    await harness.wait_for(handle, lambda s: s.paused)
    assert (await handle.describe()).typed_search_attributes.get(SA_PHASE) == "paused"
    await deployments.resume(harness.client, handle.id, "erin")
    await harness.wait_for(handle, lambda s: not s.paused)
    assert (await handle.describe()).typed_search_attributes.get(SA_PHASE) == "shift"
    await deployments.promote(harness.client, handle.id, "bob", "done watching")
    assert (await asyncio.wait_for(handle.result(), 60)).outcome is Outcome.promoted


async def test_pause_and_resume_name_who_and_why(harness: Harness) -> None:
    handle = await harness.start(harness.request("2.0.0", bake_seconds=0.3))
    await harness.wait_for(handle, lambda s: s.weights.get("canary") == 1)
    await deployments.pause(harness.client, handle.id, "dave", "investigating INC-9")
    await harness.wait_for(handle, lambda s: s.paused)
    await deployments.resume(harness.client, handle.id, "erin")
    result = await asyncio.wait_for(handle.result(), 60)
    paused = next(e for e in result.timeline if e.kind == "paused")
    resumed = next(e for e in result.timeline if e.kind == "resumed")
    assert (paused.actor, paused.message) == ("dave", "paused by dave: investigating INC-9")
    assert (resumed.actor, resumed.message) == ("erin", "resumed by erin")


async def test_promote_skips_the_remaining_steps(harness: Harness) -> None:
    handle = await harness.start(harness.request("2.0.0", bake_seconds=30))
    await harness.wait_for(handle, lambda s: s.weights.get("canary") == 1)
    with pytest.raises(deployments.RequestRefused, match="mallory may not promote"):
        await deployments.promote(harness.client, handle.id, "mallory")
    await deployments.promote(harness.client, handle.id, "bob", "hotfix for incident INC-7")
    result = await asyncio.wait_for(handle.result(), 20)

    assert result.outcome is Outcome.promoted
    weights = [d for op, d in harness.state.ops(APP) if op == "weights"]
    assert weights == ["canary=1,stable=99", "canary=100,stable=0", "canary=0,stable=100"]


async def test_worker_stopped_mid_deployment_and_a_new_worker_finishes_it(kit: Harness) -> None:
    first = kit.worker(graceful_shutdown=timedelta(0))
    running = asyncio.create_task(first.run())
    handle = await kit.start(kit.request("2.0.0", bake_seconds=1.0))
    await kit.wait_for(handle, lambda s: s.weights.get("canary") == 5)
    await first.shutdown()  # the gate in flight is cut off mid-bake
    await asyncio.gather(running, return_exceptions=True)
    stuck_at = dict(kit.state.weights[APP])
    await asyncio.sleep(1.0)
    assert kit.state.weights[APP] == stuck_at  # nobody is driving it now

    async with kit.worker():
        result = await asyncio.wait_for(handle.result(), 60)

    assert result.outcome is Outcome.promoted
    weights = [d for op, d in kit.state.ops(APP) if op == "weights"]
    # Every step applied exactly once, in order: nothing lost, nothing repeated.
    assert weights == [
        "canary=1,stable=99",
        "canary=5,stable=95",
        "canary=25,stable=75",
        "canary=100,stable=0",
        "canary=0,stable=100",
    ]


async def test_tampered_release_is_rejected_before_anything_is_provisioned(
    harness: Harness,
) -> None:
    envelope = harness.signer.release("2.0.0")
    statement = json.loads(base64.b64decode(envelope.payload))
    statement["predicate"]["version"] = "2.0.0-evil"
    envelope.payload = base64.b64encode(json.dumps(statement).encode()).decode()

    result = await harness.deploy(harness.request("2.0.0", release=envelope))
    assert result.outcome is Outcome.rejected
    assert result.cause and result.cause.startswith("release rejected:")
    assert not [op for op in harness.state.ops(APP) if op[0] in ("provision", "weights")]


async def test_release_from_an_unknown_signer_is_rejected(harness: Harness) -> None:
    stranger = Ed25519PrivateKey.generate()
    manifest = harness.signer.release("2.0.0")
    decoded = json.loads(base64.b64decode(manifest.payload))
    from zdp.models import ReleaseManifest

    envelope = sign_manifest(ReleaseManifest.model_validate(decoded["predicate"]), stranger)
    result = await harness.deploy(harness.request("2.0.0", release=envelope))
    assert result.outcome is Outcome.rejected
    assert result.cause and "unknown key" in result.cause
    assert result.status.phase is Phase.done
    assert not [op for op in harness.state.ops(APP) if op[0] == "provision"]


async def test_the_result_of_a_closed_run_never_waits_for_a_newer_run(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`closed_result` reads the run `describe` found closed: a new deployment of the same app
    and environment that starts in between (here: while describing) does not make it wait for
    that run's end. (A stack test hung on this: it waited to approve the run it was blocked on.)"""
    handle = await harness.start(harness.request("2.0.0", environment="prod"))
    status = await harness.wait_for(handle, lambda s: s.phase is Phase.await_approval)
    for approver in ("alice", "bob", "carol")[: status.approvals_required]:
        await deployments.approve(harness.client, handle.id, approver)
    assert (await asyncio.wait_for(handle.result(), 60)).outcome is Outcome.promoted
    real = deployments.handle_for

    class Racing:
        def __init__(self, handle: Any) -> None:
            self.handle = handle

        async def describe(self) -> Any:
            described = await self.handle.describe()
            # The next deployment starts, and waits for approval that nobody gives.
            await harness.start(harness.request("3.0.0", environment="prod"))
            return described

    monkeypatch.setattr(deployments, "handle_for", lambda c, w: Racing(real(c, w)))
    result = await asyncio.wait_for(
        deployments.closed_result(harness.client, f"deploy-{APP}-prod"), timeout=30
    )
    assert result.status.version == "2.0.0" and result.outcome is Outcome.promoted
