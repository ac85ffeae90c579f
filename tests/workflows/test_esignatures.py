"""21 CFR Part 11 e-signatures on approvals: bound to the deployment, run, release and signer.

Each forged, moved, replayed or missing signature is refused with one clear line, and nothing
is deployed until properly signed approvals arrive.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.kit import APP, Harness, enrol
from zdp import deployments
from zdp.compliance.esign import sign_approval
from zdp.config import EnvironmentConfig
from zdp.models import Outcome, Phase, SignedApproval

MEANING = "approve release to production"


@pytest.fixture
def keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Ed25519PrivateKey]:
    registry = tmp_path / "approvers"
    monkeypatch.setenv("ZDP_APPROVER_REGISTRY", str(registry))
    keys = {"alice": Ed25519PrivateKey.generate(), "bob": Ed25519PrivateKey.generate()}
    enrol(registry, "alice", "Alice A. Example", keys["alice"].public_key())
    enrol(registry, "bob", "Robert B. Example", keys["bob"].public_key())
    return keys


def _part11(harness: Harness, min_approvals: int = 1) -> None:
    harness.config.apps[APP].environments["prod"] = EnvironmentConfig(
        criticality="low",
        approvers=["alice", "bob", "carol"],
        min_approvals=min_approvals,
        compliance_profiles=["part11"],
    )


async def _awaiting(  # type: ignore[no-untyped-def]
    harness: Harness, keys: dict[str, Ed25519PrivateKey], environment: str = "prod"
):
    request = harness.request("2.0.0", environment=environment)
    request.release = harness.signer.validated("2.0.0", "bob", keys["bob"])
    handle = await harness.start(request)
    await harness.wait_for(handle, lambda s: s.phase is Phase.await_approval)
    return handle


async def _refused(harness: Harness, handle_id: str, signature: object, who: str = "alice") -> str:
    with pytest.raises(deployments.RequestRefused) as refused:
        await deployments.approve(harness.client, handle_id, who, None, signature)  # type: ignore[arg-type]
    return str(refused.value)


async def test_signed_approval_is_accepted_and_manifested(
    harness: Harness, keys: dict[str, Ed25519PrivateKey]
) -> None:
    _part11(harness)
    handle = await _awaiting(harness, keys)
    status = await harness.status(handle)
    assert status.signature_required and status.printed_names["alice"] == "Alice A. Example"
    assert "alice" in status.printed_names and "carol" not in status.printed_names

    unsigned = await _refused(harness, handle.id, None)
    assert "requires a Part 11 electronic signature" in unsigned

    signature = await deployments.sign_decision(
        harness.client, handle.id, "alice", "approve", MEANING, keys["alice"]
    )
    message = await deployments.approve(harness.client, handle.id, "alice", "OK", signature)
    assert "signed by Alice A. Example — approve release to production —" in message
    result = await asyncio.wait_for(handle.result(), 60)

    assert result.outcome is Outcome.promoted
    record = result.status.approvals[0]
    assert record.signature is not None and record.signature.meaning == MEANING
    decision = next(e for e in result.timeline if e.kind == "decision")
    assert decision.data["signature"]["printed_name"] == "Alice A. Example"
    assert decision.data["signature"]["key_fingerprint"] == signature.key_fingerprint


async def test_signature_from_an_unregistered_key_is_refused(
    harness: Harness, keys: dict[str, Ed25519PrivateKey]
) -> None:
    _part11(harness)
    handle = await _awaiting(harness, keys)
    forged = await deployments.sign_decision(
        harness.client, handle.id, "alice", "approve", MEANING, Ed25519PrivateKey.generate()
    )
    assert "not the key registered to alice" in await _refused(harness, handle.id, forged)


async def test_a_key_registered_without_a_passphrase_cannot_sign_part11(
    harness: Harness, keys: dict[str, Ed25519PrivateKey], tmp_path: Path
) -> None:
    """21 CFR 11.200(a)(1): two identification components. carol's key was registered by its
    public half only (no proof of a passphrase): she is not among the Part 11 signers, and her
    signature is refused however well it verifies."""
    carol = Ed25519PrivateKey.generate()
    enrol(tmp_path / "approvers", "carol", "Carol C. Example", carol.public_key(),
          encrypted_key=False)  # fmt: skip
    _part11(harness)
    handle = await _awaiting(harness, keys)
    status = await harness.status(handle)
    assert sorted(status.printed_names) == ["alice", "bob"]  # the deployment's Part 11 signers
    with pytest.raises(deployments.RequestRefused, match="carol has no registered signing"):
        await deployments.sign_decision(
            harness.client, handle.id, "carol", "approve", MEANING, carol
        )
    assert (APP, "canary") not in harness.state.deployed


async def test_signature_of_one_approver_cannot_be_used_by_another(
    harness: Harness, keys: dict[str, Ed25519PrivateKey]
) -> None:
    _part11(harness)
    handle = await _awaiting(harness, keys)
    alices = await deployments.sign_decision(
        harness.client, handle.id, "alice", "approve", MEANING, keys["alice"]
    )
    assert "not the key registered to bob" in await _refused(harness, handle.id, alices, "bob")


async def test_signature_made_for_another_deployment_is_refused(
    harness: Harness, keys: dict[str, Ed25519PrivateKey]
) -> None:
    _part11(harness)
    handle = await _awaiting(harness, keys)
    status = await harness.status(handle)
    run_id = (await handle.describe()).run_id
    elsewhere = sign_approval(
        keys["alice"],
        SignedApproval(
            deployment_id=f"deploy-{APP}-dev",
            run_id=run_id,
            release_digest=status.release_digest or "",
            decision="approve",
            meaning=MEANING,
            signer="alice",
            printed_name="Alice A. Example",
            signed_at=datetime.now(UTC),
        ),
    )
    refusal = await _refused(harness, handle.id, elsewhere)
    assert refusal == "the signature was made for another deployment (deployment_id differs)"


async def test_signature_replayed_from_an_earlier_run_is_refused(
    harness: Harness, keys: dict[str, Ed25519PrivateKey]
) -> None:
    _part11(harness)
    first = await _awaiting(harness, keys)
    old = await deployments.sign_decision(
        harness.client, first.id, "alice", "approve", MEANING, keys["alice"]
    )
    await deployments.approve(harness.client, first.id, "alice", None, old)
    assert (await asyncio.wait_for(first.result(), 60)).outcome is Outcome.promoted

    second = await _awaiting(harness, keys)  # same workflow id, a new run of the same release
    refusal = await _refused(harness, second.id, old)
    assert refusal == "the signature was made for another run of this deployment (run_id differs)"


async def test_stale_signature_and_tampered_payload_are_refused(
    harness: Harness, keys: dict[str, Ed25519PrivateKey]
) -> None:
    _part11(harness)
    handle = await _awaiting(harness, keys)
    status = await harness.status(handle)
    payload = SignedApproval(
        deployment_id=handle.id,
        run_id=(await handle.describe()).run_id,
        release_digest=status.release_digest or "",
        decision="approve",
        meaning=MEANING,
        signer="alice",
        printed_name="Alice A. Example",
        signed_at=datetime.now(UTC) - timedelta(hours=1),
    )
    stale = sign_approval(keys["alice"], payload)
    assert "sign within 15 minutes" in await _refused(harness, handle.id, stale)

    fresh = sign_approval(
        keys["alice"], payload.model_copy(update={"signed_at": datetime.now(UTC)})
    )
    other = sign_approval(keys["alice"], payload.model_copy(update={"meaning": "something else"}))
    tampered = fresh.model_copy(update={"payload": other.payload})
    assert "does not verify" in await _refused(harness, handle.id, tampered)
    assert (APP, "canary") not in harness.state.deployed


async def test_too_few_registered_signers_refuses_the_deployment_up_front(
    harness: Harness, keys: dict[str, Ed25519PrivateKey]
) -> None:
    _part11(harness, min_approvals=3)  # alice, bob and carol; carol has no key
    request = harness.request("2.0.0", environment="prod")
    request.release = harness.signer.validated("2.0.0", "bob", keys["bob"])
    result = await harness.deploy(request)
    assert result.outcome is Outcome.failed
    assert "needs 3 signed approvals but only 2 of the approvers" in (result.cause or "")


async def test_promote_needs_a_part11_signature_where_approvals_do(
    harness: Harness, keys: dict[str, Ed25519PrivateKey]
) -> None:
    _part11(harness)
    request = harness.request("2.0.0", environment="prod", bake_seconds=30)
    request.release = harness.signer.validated("2.0.0", "bob", keys["bob"])
    handle = await harness.start(request)
    await harness.wait_for(handle, lambda s: s.phase is Phase.await_approval)
    signature = await deployments.sign_decision(
        harness.client, handle.id, "alice", "approve", MEANING, keys["alice"]
    )
    await deployments.approve(harness.client, handle.id, "alice", None, signature)
    await harness.wait_for(handle, lambda s: s.weights.get("canary") == 1)

    proof = await deployments.sign_request(
        harness.client, handle.id, "promote", "bob", "api", keys["bob"]
    )
    with pytest.raises(deployments.RequestRefused, match="requires a Part 11 electronic"):
        await deployments.promote(harness.client, handle.id, "bob", "now", proof=proof)
    signed = await deployments.sign_decision(
        harness.client, handle.id, "bob", "promote", "promote release to production now",
        keys["bob"],
    )  # fmt: skip
    proof = await deployments.sign_request(
        harness.client, handle.id, "promote", "bob", "api", keys["bob"]
    )
    await deployments.promote(
        harness.client, handle.id, "bob", "now", proof=proof, signature=signed
    )
    result = await asyncio.wait_for(handle.result(), 60)
    assert result.outcome is Outcome.promoted
    promoted = next(e for e in result.timeline if e.kind == "promote_requested")
    assert "signed by Robert B. Example — promote release to production now —" in promoted.message
