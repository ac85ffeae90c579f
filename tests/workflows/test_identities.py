"""Proven identities in a `sox` environment: every start and decision carries its actor's
signature, separation of duties compares who signed, and a signature lifted onto another
deployment, run, action or request is refused, each refusal on the record."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.kit import APP, KEYS, Harness
from zdp import deployments
from zdp.compliance.identity import sign_request
from zdp.config import EnvironmentConfig
from zdp.models import Outcome, Phase, SignedRequest


def _sox(harness: Harness) -> None:
    harness.config.apps[APP].environments["prod"] = EnvironmentConfig(
        criticality="low",
        approvers=["alice", "bob", "carol"],
        min_approvals=1,
        compliance_profiles=["sox"],
    )
    for who in ("alice", "bob", "carol"):  # before the risk report takes its snapshot
        harness.ensure_registered(who)


async def _started_by_alice(harness: Harness) -> Any:
    handle = await harness.start(harness.request("2.0.0", environment="prod", initiator="alice"))
    await harness.wait_for(handle, lambda s: s.phase is Phase.await_approval)
    return handle


async def _refused(harness: Harness, workflow_id: str, who: str, **kwargs: Any) -> str:
    with pytest.raises(deployments.RequestRefused) as refused:
        await deployments.approve(harness.client, workflow_id, who, **kwargs)
    return str(refused.value)


async def test_unsigned_approval_is_refused_where_identities_must_be_proven(
    harness: Harness,
) -> None:
    _sox(harness)
    handle = await _started_by_alice(harness)
    status = await harness.status(handle)
    assert status.identities_required
    assert status.initiator is not None and status.initiator.proven
    assert status.initiator.user == "alice"

    why = await _refused(harness, handle.id, "bob", channel="cli")
    assert why.startswith("unsigned approve by bob refused: identities must be proven here")
    assert "(prod is under sox)" in why
    timeline = await deployments.timeline(harness.client, handle.id)
    refused = [e for e in timeline if e.kind == "decision_refused"]
    assert refused[-1].data == {"decision": "approve", "channel": "cli", "reason": why}
    assert (await harness.status(handle)).approvals == []


async def test_bobs_signed_approval_of_alices_deployment_is_accepted_and_shows_who(
    harness: Harness,
) -> None:
    _sox(harness)
    handle = await _started_by_alice(harness)
    proof = await harness.proof(handle.id, "approve", "bob", channel="cli")
    message = await deployments.approve(
        harness.client, handle.id, "bob", "reviewed", channel="cli", proof=proof
    )
    assert message.startswith("approved by bob via cli (signed with key sha256:")
    result = await asyncio.wait_for(handle.result(), 60)

    assert result.outcome is Outcome.promoted
    record = result.status.approvals[0]
    assert record.proof is not None and record.proof.proven and record.proof.user == "bob"
    assert record.proof.channel == "cli" and record.proof.key_fingerprint == proof.key_fingerprint
    started = next(e for e in result.timeline if e.kind == "initiator")
    assert started.message.startswith("started by alice via api (signed with key sha256:")
    assert "proven identities required here (prod is under sox)" in started.message
    decision = next(e for e in result.timeline if e.kind == "decision")
    assert decision.data["proof"]["user"] == "bob" and decision.data["proof"]["proven"]


async def test_alices_signed_approval_of_her_own_deployment_is_refused(harness: Harness) -> None:
    _sox(harness)
    handle = await _started_by_alice(harness)
    proof = await harness.proof(handle.id, "approve", "alice")
    why = await _refused(harness, handle.id, "alice", proof=proof)
    assert why == (
        "alice started this deployment, so someone else must approve it (both proven by "
        "their signatures)"
    )


async def test_a_signature_lifted_to_another_deployment_run_or_action_is_refused(
    harness: Harness,
) -> None:
    _sox(harness)
    handle = await _started_by_alice(harness)
    bobs = await harness.proof(handle.id, "approve", "bob")
    claimed = SignedRequest.model_validate_json(base64.b64decode(bobs.payload))

    def moved(**change: str) -> Any:
        return sign_request(KEYS["bob"], claimed.model_copy(update=change))

    # Bob's approval sent as a rejection, or as carol's, or made for another deployment.
    with pytest.raises(deployments.RequestRefused, match=r"another action \(action differs\)"):
        await deployments.reject(harness.client, handle.id, "bob", proof=bobs)
    assert "another person (actor differs)" in await _refused(
        harness, handle.id, "carol", proof=bobs
    )
    elsewhere = moved(deployment_id=f"deploy-{APP}-dev")
    assert "another deployment (deployment_id differs)" in await _refused(
        harness, handle.id, "bob", proof=elsewhere
    )
    # A key nobody registered proves nothing.
    forged = sign_request(Ed25519PrivateKey.generate(), claimed)
    assert "not the key registered to bob" in await _refused(
        harness, handle.id, "bob", proof=forged
    )
    # The same deployment's next run: bob's signature for the aborted run is refused there.
    abort = await harness.proof(handle.id, "abort", "alice")
    await deployments.control(harness.client, handle.id, "abort", "alice", "redo", proof=abort)
    assert (await asyncio.wait_for(handle.result(), 60)).outcome is Outcome.aborted
    again = await _started_by_alice(harness)
    assert "another run of this deployment (run_id differs)" in await _refused(
        harness, again.id, "bob", proof=bobs
    )
    # Used once, a signature is spent.
    fresh = await harness.proof(again.id, "approve", "bob")
    await deployments.approve(harness.client, again.id, "bob", proof=fresh)
    assert (await asyncio.wait_for(again.result(), 60)).outcome is Outcome.promoted
    result = await again.result()
    refusals = [e for e in result.timeline if e.kind == "decision_refused"]
    assert [e.data["reason"] for e in refusals] == [
        "the signature was made for another run of this deployment (run_id differs)"
    ]


async def test_an_unsigned_or_moved_start_is_refused_before_anything_changes(
    harness: Harness,
) -> None:
    _sox(harness)
    # Unsigned: a typed initiator proves nothing here (nobody is in KEYS under this name).
    unsigned = await harness.deploy(harness.request("2.0.0", environment="prod", initiator="eve"))
    assert unsigned.outcome is Outcome.rejected
    assert unsigned.cause is not None and unsigned.cause.startswith(
        "refused: unsigned start by eve refused: identities must be proven here"
    )
    assert not [e for e in unsigned.timeline if e.kind == "traffic"]
    refusal = next(e for e in unsigned.timeline if e.kind == "decision_refused")
    assert refusal.data["decision"] == "start"

    # Signed for one request, sent with another (the strategy changed after signing).
    signed = deployments.sign_start(
        harness.request("2.0.0", environment="prod", initiator="alice"), KEYS["alice"]
    )
    moved = signed.model_copy(update={"reason": "something else"})
    result = await harness.deploy(moved)
    assert result.outcome is Outcome.rejected
    assert result.cause == "refused: the signature was made for another request " \
        "(request_digest differs)"  # fmt: skip

    # The same signed start used twice: the second run is refused.
    first = await harness.start(signed)
    await harness.wait_for(first, lambda s: s.phase is Phase.await_approval)
    abort = await harness.proof(first.id, "abort", "alice")
    await deployments.control(harness.client, first.id, "abort", "alice", "again", proof=abort)
    assert (await asyncio.wait_for(first.result(), 60)).outcome is Outcome.aborted
    second = await harness.deploy(signed)
    assert second.outcome is Outcome.rejected
    assert second.cause is not None and "this signed start was already used by run" in second.cause


async def test_pause_and_abort_need_their_senders_signature_in_sox(harness: Harness) -> None:
    _sox(harness)
    handle = await _started_by_alice(harness)
    await deployments.control(harness.client, handle.id, "abort", "mallory", "typed name")
    proof = await harness.proof(handle.id, "abort", "carol", channel="cli")
    await deployments.control(
        harness.client, handle.id, "abort", "carol", "not today", "cli", proof
    )
    result = await asyncio.wait_for(handle.result(), 60)
    assert result.outcome is Outcome.aborted
    refused = next(e for e in result.timeline if e.kind == "decision_refused")
    assert refused.message.startswith("abort by mallory via api refused: unsigned abort")
    aborted = next(e for e in result.timeline if e.kind == "abort_requested")
    assert aborted.message.startswith("abort requested by carol via cli (signed with key")


async def test_a_control_sent_before_identities_are_known_is_judged_once_they_are(
    kit: Harness,
) -> None:
    """An abort that reaches the workflow before its risk report (here: sent before any
    worker runs) waits for the registry snapshot: unsigned in sox, it is refused and
    recorded; the deployment goes on to await approval."""
    _sox(kit)
    handle = await kit.start(kit.request("2.0.0", environment="prod", initiator="alice"))
    await deployments.control(kit.client, handle.id, "abort", "mallory", "too early")
    async with kit.worker():
        status = await kit.wait_for(handle, lambda s: s.phase is Phase.await_approval)
        assert status.outcome is None
        timeline = await deployments.timeline(kit.client, handle.id)
        refused = [e for e in timeline if e.kind == "decision_refused"]
        assert [e.data["decision"] for e in refused] == ["abort"]
        assert refused[0].message.startswith("abort by mallory via api refused: unsigned abort")
        # Judged after the risk report, which carries the registry snapshot.
        kinds = [e.kind for e in timeline]
        assert kinds.index("risk_assessed") < kinds.index("decision_refused")
        proof = await kit.proof(handle.id, "reject", "bob")
        await deployments.reject(kit.client, handle.id, "bob", "not now", proof=proof)
        assert (await asyncio.wait_for(handle.result(), 60)).outcome is Outcome.rejected


async def test_promote_follows_the_approval_rules(harness: Harness) -> None:
    """Promoting skips the remaining gates: the initiator may not do it, whatever they sign."""
    _sox(harness)
    request = harness.request("2.0.0", environment="prod", initiator="alice", bake_seconds=30)
    handle = await harness.start(request)
    await harness.wait_for(handle, lambda s: s.phase is Phase.await_approval)
    proof = await harness.proof(handle.id, "approve", "bob")
    await deployments.approve(harness.client, handle.id, "bob", proof=proof)
    await harness.wait_for(handle, lambda s: s.weights.get("canary") == 1)

    own = await harness.proof(handle.id, "promote", "alice")
    with pytest.raises(deployments.RequestRefused) as refused:
        await deployments.promote(harness.client, handle.id, "alice", "ship it", proof=own)
    assert str(refused.value) == "alice started this deployment, so someone else must promote it"
    theirs = await harness.proof(handle.id, "promote", "carol")
    message = await deployments.promote(harness.client, handle.id, "carol", "ok", proof=theirs)
    assert message == "remaining steps skipped; promoting"
    result = await asyncio.wait_for(handle.result(), 60)
    assert result.outcome is Outcome.promoted
    promoted = next(e for e in result.timeline if e.kind == "promote_requested")
    assert promoted.message.startswith("carol via api (signed with key sha256:")


async def test_only_approvers_operators_and_the_initiator_steer_a_deployment(
    harness: Harness,
) -> None:
    """Who may pause, resume and abort is decided like who may approve: a registered person
    who is none of those is refused (and recorded), even with a valid signature."""
    _sox(harness)
    harness.config.apps[APP].environments["prod"].operators = ["dave"]
    harness.ensure_registered("ci-bot")
    handle = await _started_by_alice(harness)
    stranger = await harness.proof(handle.id, "pause", "ci-bot")
    await deployments.control(
        harness.client, handle.id, "pause", "ci-bot", "why not", proof=stranger
    )
    await harness.wait_for(
        handle,
        lambda s: s.phase is Phase.await_approval,
    )
    timeline = await deployments.timeline(harness.client, handle.id)
    refused = [e for e in timeline if e.kind == "decision_refused"]
    assert refused and refused[-1].data["reason"] == (
        "ci-bot may not pause webshop in prod: its approvers, operators and initiator may "
        "(alice, bob, carol, dave)"
    )
    assert not (await harness.status(handle)).paused
    own = await harness.proof(handle.id, "abort", "alice")  # the initiator may
    await deployments.control(harness.client, handle.id, "abort", "alice", "stop", proof=own)
    assert (await asyncio.wait_for(handle.result(), 60)).outcome is Outcome.aborted
