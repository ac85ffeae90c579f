"""Compliance profiles: missing evidence refuses the release at verify, listing all of it."""

from __future__ import annotations

import pytest

from tests.kit import APP, Harness
from zdp import deployments
from zdp.config import EnvironmentConfig
from zdp.models import DeploymentResult, Outcome, Phase


def _profiles(harness: Harness, *profiles: str) -> None:
    env = harness.config.apps[APP].environments["prod"]
    harness.config.apps[APP].environments["prod"] = EnvironmentConfig(
        criticality=env.criticality,
        approvers=env.approvers,
        min_approvals=1,
        compliance_profiles=list(profiles),
    )


def _refused(harness: Harness, result: DeploymentResult) -> str:
    assert result.outcome is Outcome.rejected
    assert (APP, "canary") not in harness.state.deployed
    assert result.cause is not None
    return result.cause


async def test_sox_without_a_change_ticket_is_refused(harness: Harness) -> None:
    _profiles(harness, "sox")
    result = await harness.deploy(harness.request("2.0.0", environment="prod", change_ref=None))
    assert _refused(harness, result) == (
        "release rejected: compliance evidence missing for webshop 2.0.0 to prod (sox): "
        "change ticket (--change-ref) (sox)"
    )


async def test_pci_change_record_lists_every_missing_field(harness: Harness) -> None:
    _profiles(harness, "sox", "pci-dss")
    request = harness.request("2.0.0", environment="prod")
    request.release = harness.signer.release("2.0.0", security_impact="none: UI text only")
    cause = _refused(harness, await harness.deploy(request))
    assert cause.endswith(
        "(sox, pci-dss): change description (pci-dss 6.5.1); test evidence (pci-dss 6.5.1); "
        "back-out procedure (pci-dss 6.5.1)"
    )


async def test_part11_without_validation_and_gdpr_without_dpia_are_listed_together(
    harness: Harness,
) -> None:
    _profiles(harness, "part11", "gdpr")
    request = harness.request("2.0.0", environment="prod")
    request.release = harness.signer.release("2.0.0", personal_data_change=True)
    cause = _refused(harness, await harness.deploy(request))
    assert "DPIA reference for a personal-data change (gdpr Art. 35)" in cause
    assert "names no validation document" in cause


@pytest.mark.parametrize("profiles", [("sox",), ("gdpr",)])
async def test_complete_evidence_is_recorded_in_the_timeline(
    harness: Harness, profiles: tuple[str, ...]
) -> None:
    _profiles(harness, *profiles)
    harness.ensure_registered("alice")  # in the registry snapshot the risk report takes
    handle = await harness.start(harness.request("2.0.0", environment="prod"))
    await harness.wait_for(handle, lambda s: s.phase is Phase.await_approval)
    proof = await harness.proof(handle.id, "approve", "alice")
    await deployments.approve(harness.client, handle.id, "alice", proof=proof)
    result = await handle.result()
    assert result.outcome is Outcome.promoted
    check = next(
        e for e in result.timeline if e.kind == "domain_check" and "compliance" in e.message
    )
    assert check.data["detail"] == f"evidence complete for {', '.join(profiles)}"
