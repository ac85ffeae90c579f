"""What a signed release may say: only the config its app declares (shown against the running
version's wherever people decide), and no older version than the one running unless an operator
says so."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.kit import APP, Harness
from tests.workflows.test_notifications import Recorder
from zdp import deployments
from zdp.forensics.markdown import render_markdown
from zdp.models import Deployed, DsseEnvelope, Outcome, Phase
from zdp.release import sign_manifest
from zdp.slack.messages import approval_message


def release_setting(kit: Harness, version: str, **config: str) -> DsseEnvelope:
    manifest = kit.signer.manifest(version).model_copy(update={"config_overrides": config})
    return sign_manifest(manifest, kit.signer.key)


def running_with(kit: Harness, config: dict[str, str] | None, version: str = "1.0.0") -> None:
    kit.state.deployed[(APP, "stable")] = Deployed(
        app=APP,
        slot="stable",
        version=version,
        endpoints=[f"memory://{APP}/stable/{version}/0"],
        config=config,
    )


def provisioned(kit: Harness) -> list[str]:
    return [detail for op, detail in kit.state.ops(APP) if op == "provision"]


async def test_a_release_may_set_only_the_config_its_app_declares(harness: Harness) -> None:
    """Undeclared keys, secrets, engine keys and drill settings (where the environment does not
    allow drills) are refused at verify, every one named, and nothing starts."""
    bad = release_setting(
        harness, "2.3.0", API_KEYS='{"k": "trader"}', OPEN_READS="1", DRILL_ENDPOINT="1"
    )
    result = await harness.deploy(harness.request("2.3.0", release=bad))
    assert result.outcome is Outcome.rejected, result.cause
    assert result.cause is not None
    assert "API_KEYS (a secret: secrets come by reference" in result.cause
    assert "OPEN_READS (not declared overridable)" in result.cause
    assert "DRILL_ENDPOINT (a drill setting; dev does not allow drills)" in result.cause
    assert "webshop lets a release set: FEATURE_X, LOG_LEVEL" in result.cause
    assert provisioned(harness) == []


async def test_declared_config_is_shown_against_the_running_versions_where_people_decide(
    kit: Harness,
) -> None:
    """A declared override is diffed against what the running version was started with: in
    the approval message, the risk factors, the timeline (release_verified, risk_assessed)."""
    recorder = Recorder()
    kit.notifier = recorder
    running_with(kit, {"FEATURE_X": "off", "LOG_LEVEL": "info"})
    envelope = release_setting(kit, "2.3.1", FEATURE_X="on", LOG_LEVEL="info")
    async with kit.worker():
        handle = await kit.start(kit.request("2.3.1", environment="prod", release=envelope))
        await kit.wait_for(handle, lambda s: s.phase is Phase.await_approval)
        waiting = await recorder.latest("awaiting_approval")
        assert (waiting.running_version, waiting.config_changes) == (
            "1.0.0",
            ["FEATURE_X: off -> on"],
        )
        _, blocks = approval_message(waiting)
        texts = [
            b.get("text", {}).get("text", "") for b in blocks if b.get("block_id") == "zdp_config"
        ]
        assert texts == ["*Config against the running 1.0.0:* FEATURE_X: off -&gt; on"]
        await deployments.approve(kit.client, handle.id, "alice")
        result = await asyncio.wait_for(handle.result(), 60)
    assert result.outcome is Outcome.promoted, result.cause
    verified = next(e for e in result.timeline if e.kind == "release_verified")
    assert verified.data["config_overrides"] == {"FEATURE_X": "on", "LOG_LEVEL": "info"}
    assert verified.message.endswith("; sets FEATURE_X=on, LOG_LEVEL=info")
    assert verified.data["change"]["lines_changed"] == 10  # the change record, for the report
    risk = next(e for e in result.timeline if e.kind == "risk_assessed")
    assert risk.message.endswith("; config against the running 1.0.0: FEATURE_X: off -> on")
    assert risk.data["config_changes"] == [
        {"key": "FEATURE_X", "before": "off", "after": "on", "known": True}
    ]
    factor: dict[str, Any] = next(f for f in risk.data["factors"] if f["name"] == "config_changed")
    assert factor["detail"] == "the release sets FEATURE_X: off -> on" and factor["points"] > 0
    report = render_markdown(result)  # the report an auditor reads
    assert "the release sets FEATURE_X: off -> on" in report
    assert "sets FEATURE_X=on, LOG_LEVEL=info" in report
    # The next release is diffed against what now runs: the same config again is no change.
    assert kit.state.deployed[(APP, "stable")].config == {"FEATURE_X": "on", "LOG_LEVEL": "info"}


async def test_a_downgrade_is_refused_unless_an_operator_allows_it(harness: Harness) -> None:
    running_with(harness, {}, version="1.4.0")
    older = harness.signer.release("1.3.9")
    refused = await harness.deploy(harness.request("1.3.9", release=older))
    assert refused.outcome is Outcome.blocked
    assert (
        refused.cause is not None
        and "downgrade refused: 1.3.9 is older than the running 1.4.0" in refused.cause
    )
    not_operator = await harness.deploy(
        harness.request("1.3.9", release=older, allow_downgrade=True)
    )
    assert not_operator.outcome is Outcome.blocked
    assert "ci-bot, who is neither an operator nor an approver here" in (not_operator.cause or "")
    assert provisioned(harness) == []

    allowed = await harness.deploy(
        harness.request("1.3.9", release=older, allow_downgrade=True, initiator="oncall")
    )
    assert allowed.outcome is Outcome.promoted, allowed.cause
    check = next(
        e
        for e in allowed.timeline
        if e.kind == "domain_check" and e.data.get("name") == "downgrade"
    )
    assert (
        "downgrade allowed: 1.3.9 is older than the running 1.4.0; --allow-downgrade from oncall"
        in check.message
    )
