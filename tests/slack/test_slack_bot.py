"""`zdp slack serve` against a real workflow: clicks and /zdp commands as Slack sends them.

Each request is signed here and POSTed over HTTP to the bot process; the bot edits the
message in the fake Slack, and the workflow's status and timeline show what changed.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.kit import APP, TEST_ADMIN, Harness, enrol
from tests.slack.slack_kit import (
    ALICE,
    ALICE_ELSEWHERE,
    BOB,
    BOT_TOKEN,
    CHANNEL,
    CI_BOT,
    MALLORY,
    SlackWorld,
    awaiting_approval,
    block_text,
    unescape,
)
from zdp import deployments
from zdp.compliance.audit.log import default_log_path, verify_log
from zdp.compliance.engine_key import engine_key
from zdp.compliance.registry import registry_dir, remove
from zdp.config import EnvironmentConfig
from zdp.models import DeploymentStatus, Outcome, Phase
from zdp.notify import SlackNotifier
from zdp.slack import bot as bot_module
from zdp.slack.config import SlackConfig
from zdp.slack.messages import APPROVE_ACTION, DECISION_BLOCK, REJECT_ACTION, button_value


async def _awaiting(harness: Harness, **overrides: Any) -> tuple[Any, DeploymentStatus]:
    handle = await harness.start(harness.request("2.0.0", environment="prod", **overrides))
    status = await harness.wait_for(handle, lambda s: s.phase is Phase.await_approval)
    return handle, status


async def _still_awaiting(harness: Harness, handle: Any) -> DeploymentStatus:
    status = await harness.status(handle)
    assert status.phase is Phase.await_approval and status.approvals == []
    return status


def _blocks_ids(blocks: list[dict[str, Any]]) -> list[str]:
    return [b.get("block_id", b["type"]) for b in blocks]


# --------------------------------------------------------------------------- buttons


async def test_approve_click_lets_the_deployment_proceed(
    harness: Harness, slack: SlackWorld
) -> None:
    handle, status = await _awaiting(harness)
    message = await slack.post_approval(status)

    response = await slack.click(message, APPROVE_ACTION, ALICE)
    assert response.status_code == 200, response.text

    update = await slack.update_of(message)
    assert update.params["channel"] == message.channel
    note = block_text(update.params["blocks"])
    # The bot attests for the user Slack authenticated: its own registered key signed it.
    assert (
        "<@U0001> (alice) via Slack: approved by alice via Slack (workspace T0001, user U0001), "
        "attested by slack-bot (1 of 1)" in note
    )
    assert DECISION_BLOCK not in _blocks_ids(update.params["blocks"])  # no more buttons
    assert "Approval needed: webshop 2.0.0 → prod" in note  # the request is still shown
    result = await asyncio.wait_for(handle.result(), 60)
    assert result.outcome is Outcome.promoted
    decision = next(e for e in result.timeline if e.kind == "decision")
    assert decision.actor == "alice" and decision.data["proof"]["attested_by"] == "slack-bot"
    assert decision.data["proof"]["via"] == {"workspace": "T0001", "user": "U0001"}


async def test_the_workflow_posts_the_message_and_a_click_on_it_approves(
    kit: Harness, slack: SlackWorld
) -> None:
    kit.notifier = SlackNotifier(BOT_TOKEN, {APP: CHANNEL}, slack.api.api_url)
    async with kit.worker():
        handle = await kit.start(kit.request("2.0.0", environment="prod"))
        message = await slack.approval_posted()
        assert "*Started by*\nci-bot" in block_text(message.blocks)
        assert (await slack.click(message, APPROVE_ACTION, BOB)).status_code == 200
        result = await asyncio.wait_for(handle.result(), 60)

    assert result.outcome is Outcome.promoted
    assert "(bob) via Slack: approved by bob via Slack (workspace T0001, user U0002)" in block_text(
        (await slack.update_of(message)).params["blocks"]
    )
    lines = [unescape(c.params["text"]) for c in slack.api.of("chat.postMessage")]
    assert "webshop 2.0.0 → prod started by ci-bot (change CHG-1001)" in lines
    assert "webshop 2.0.0 → prod passed the 25% step" in lines
    assert lines[-1] == "webshop 2.0.0 → prod promoted"


async def test_reject_click_ends_the_deployment_rejected(
    harness: Harness, slack: SlackWorld
) -> None:
    handle, status = await _awaiting(harness)
    message = await slack.post_approval(status)

    assert (await slack.click(message, REJECT_ACTION, BOB)).status_code == 200

    result = await asyncio.wait_for(handle.result(), 60)
    assert result.outcome is Outcome.rejected
    update = await slack.update_of(message)
    assert (
        "rejected by bob via Slack (workspace T0001, user U0002), attested by slack-bot"
        in block_text(update.params["blocks"])
    )
    assert DECISION_BLOCK not in _blocks_ids(update.params["blocks"])
    assert (APP, "canary") not in harness.state.deployed


async def test_self_approval_is_refused_and_shown_in_the_message(
    harness: Harness, slack: SlackWorld
) -> None:
    handle, status = await _awaiting(harness)
    message = await slack.post_approval(status)

    assert (await slack.click(message, APPROVE_ACTION, CI_BOT)).status_code == 200

    update = await slack.update_of(message)
    note = block_text(update.params["blocks"])
    assert (
        "(ci-bot) could not approve: ci-bot started this deployment, so someone else must "
        "approve it" in note
    )
    assert DECISION_BLOCK in _blocks_ids(update.params["blocks"])  # others can still approve
    await _still_awaiting(harness, handle)
    # The attempt is on the record: in the timeline, and in the audit log, which verifies.
    timeline = await deployments.timeline(harness.client, handle.id)
    refused = [e for e in timeline if e.kind == "decision_refused"]
    assert [(e.actor, e.data["channel"], e.data["decision"]) for e in refused] == [
        ("ci-bot", "slack", "approve")
    ]
    log = default_log_path(harness.home)
    logged = [json.loads(line) for line in log.read_text().splitlines()]
    mine = [e for e in logged if e["workflow_id"] == handle.id and e["kind"] == "decision_refused"]
    assert mine and mine[-1]["data"]["reason"] == refused[0].data["reason"]
    verify_log(log, public_keys=[engine_key(harness.home).public_key()])


async def test_unmapped_slack_user_is_refused_and_nothing_changes(
    harness: Harness, slack: SlackWorld
) -> None:
    handle, status = await _awaiting(harness)
    message = await slack.post_approval(status)

    for who in (MALLORY, ALICE_ELSEWHERE):  # alice's user id in another workspace is not alice
        assert (await slack.click(message, APPROVE_ACTION, who)).status_code == 200
    first, second = await slack.update_of(message, 1), await slack.update_of(message, 2)

    assert "Slack user U0666 of team T0001 is not mapped to an approver identity" in block_text(
        first.params["blocks"]
    )
    assert "Slack user U0001 of team T0002 is not mapped" in block_text(second.params["blocks"])
    assert "nothing was changed" in block_text(second.params["blocks"])
    # A later refusal replaces the earlier one rather than piling up.
    assert "U0666" not in block_text(second.params["blocks"])
    await _still_awaiting(harness, handle)


# Forged, stale and replayed Slack requests: tests/e2e/test_bad_input.py (the bad-input matrix).


# --------------------------------------------------------------------------- Part 11


@pytest.fixture
def part11(harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Harness:
    """prod under 21 CFR Part 11: alice and bob have registered signing keys."""
    registry = tmp_path / "approvers"
    monkeypatch.setenv("ZDP_APPROVER_REGISTRY", str(registry))
    for user, name in (("alice", "Alice A. Example"), ("bob", "Robert B. Example")):
        enrol(registry, user, name, Ed25519PrivateKey.generate().public_key())
    enrol(registry, "val-eng", "Vera L. Engineer", VALIDATION_KEY.public_key())
    harness.config.apps[APP].environments["prod"] = EnvironmentConfig(
        criticality="low",
        approvers=["alice", "bob", "carol"],
        min_approvals=1,
        compliance_profiles=["part11"],
        validation_approvers=["val-eng"],
    )
    return harness


VALIDATION_KEY = Ed25519PrivateKey.generate()


async def test_part11_click_cannot_approve_and_shows_the_signing_command(
    part11: Harness, slack: SlackWorld
) -> None:
    handle, status = await _awaiting(
        part11,
        release=part11.signer.validated("2.0.0", "val-eng", VALIDATION_KEY),
    )
    assert status.signature_required
    message = await slack.post_approval(status)
    assert all(b["type"] != "actions" for b in message.blocks)  # no button to click

    # A click all the same (a hand-made payload naming this very run) approves nothing.
    bound = button_value(awaiting_approval(status))
    assert (await slack.click(message, APPROVE_ACTION, ALICE, bound)).status_code == 200

    update = await slack.update_of(message)
    note = block_text(update.params["blocks"])
    assert "a button cannot approve this deployment, because 21 CFR Part 11" in note
    assert (
        f"zdp approve {handle.id} --as alice --key <your key> "
        '--meaning "approve release to prod" --prompt' in note
    )
    await _still_awaiting(part11, handle)


# --------------------------------------------------------------------------- /zdp


async def test_slash_status_pause_resume_abort(harness: Harness, slack: SlackWorld) -> None:
    handle = await harness.start(harness.request("2.0.0", bake_seconds=30))
    await harness.wait_for(handle, lambda s: s.weights.get("canary") == 1)

    stranger = await slack.command(f"status {handle.id}", MALLORY)  # not for the whole workspace
    assert "Slack user U0666 of team T0001 is not mapped" in stranger
    status = await slack.command(f"status {handle.id}", ALICE)
    assert f"*{handle.id}*: webshop 2.0.0 → dev (canary)" in status
    assert "phase: shift" in status and "traffic: canary 1%, stable 99%" in status
    assert "risk: " in status and "step: 1 of 4 [1, 5, 25, 100]" in status

    assert await slack.command(f"pause {handle.id}", ALICE) == (
        f"pause sent to {handle.id} (as alice)"
    )
    await harness.wait_for(handle, lambda s: s.paused)
    assert "phase: shift (paused)" in await slack.command(f"status {handle.id}", ALICE)
    events = await deployments.timeline(harness.client, handle.id)
    paused = next(e for e in events if e.kind == "paused")
    assert paused.actor == "alice" and "via Slack" in paused.message

    refused = await slack.command(f"resume {handle.id}", MALLORY)
    assert "Slack user U0666 of team T0001 is not mapped" in refused
    assert (await harness.status(handle)).paused

    assert await slack.command(f"resume {handle.id}", BOB) == (
        f"resume sent to {handle.id} (as bob)"
    )
    await harness.wait_for(handle, lambda s: not s.paused)

    assert await slack.command(f"abort {handle.id}", ALICE) == (
        f"abort sent to {handle.id} (as alice)"
    )
    result = await asyncio.wait_for(handle.result(), 60)
    # Aborted mid-shift: what was changed is rolled back, and the cause says who asked.
    assert result.outcome is Outcome.rolled_back
    assert result.cause == "aborted by alice: no reason given"
    requested = next(e for e in result.timeline if e.kind == "abort_requested")
    assert requested.actor == "alice"
    assert requested.message == (
        "abort requested by alice via Slack (workspace T0001, user U0001), attested by "
        "slack-bot: no reason given"
    )


async def test_slash_usage_and_unknown_deployment(harness: Harness, slack: SlackWorld) -> None:
    usage = "usage: /zdp status|pause|resume|abort deploy-&lt;app&gt;-&lt;env&gt;"
    assert await slack.command("deploy webshop", ALICE) == usage
    assert await slack.command("", ALICE) == usage
    assert await slack.command("status", ALICE) == usage
    assert await slack.command("status deploy-nope-dev", ALICE) == (
        "status deploy-nope-dev failed: no deployment deploy-nope-dev (check the id and namespace)"
    )
    assert await slack.command("pause deploy-nope-dev", ALICE) == (
        "pause deploy-nope-dev failed: no deployment deploy-nope-dev (check the id and namespace)"
    )


async def test_a_slow_answer_is_acknowledged_then_sent_to_response_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class SlowTemporal(bot_module.ApprovalBot):
        async def run_command(self, sub: str, workflow_id: str, *who: str | None) -> str:
            await asyncio.sleep(0.3)
            return f"{sub} {workflow_id}: the answer"

    monkeypatch.setattr(bot_module, "COMMAND_ANSWER_SECONDS", 0.05)
    acks: list[dict[str, Any]] = []
    responses: list[dict[str, Any]] = []

    async def ack(**kwargs: Any) -> None:
        acks.append(kwargs)

    async def respond(**kwargs: Any) -> None:
        responses.append(kwargs)

    slow = SlowTemporal(None, SlackConfig())  # type: ignore[arg-type]
    command = {"text": "status deploy-webshop-dev", "team_id": "T0001", "user_id": "U0001"}
    await slow.on_command(ack, command, respond)  # type: ignore[arg-type]

    assert acks == [
        {"text": "status deploy-webshop-dev: working on it…", "response_type": "ephemeral"}
    ]
    assert responses == [
        {
            "text": "status deploy-webshop-dev: the answer",
            "response_type": "ephemeral",
            "replace_original": False,
        }
    ]


# --------------------------------------------------------------------------- the command


def test_serve_without_secrets_is_one_line_and_exit_1(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZDP_SLACK_")}
    env["ZDP_SLACK_BOT_TOKEN"] = "xoxb-only-the-token"
    run = subprocess.run(
        [str(Path(sys.executable).parent / "zdp"), "slack", "serve", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert lines == [
        "error: ZDP_SLACK_SIGNING_SECRET is not set: copy it from your Slack app's settings "
        "(Basic Information: Signing Secret; OAuth & Permissions: Bot User OAuth Token)"
    ], run.stderr


def test_serve_with_a_bad_identity_file_is_one_line_and_exit_1(tmp_path: Path) -> None:
    bad = tmp_path / "slack.yaml"
    bad.write_text("identities:\n  - {team: T0001, user: alice, approver: alice}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZDP_SLACK_")}
    env.update(ZDP_SLACK_BOT_TOKEN="xoxb-x", ZDP_SLACK_SIGNING_SECRET="s")
    run = subprocess.run(
        [str(Path(sys.executable).parent / "zdp"), "slack", "serve", "--identities", str(bad)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {bad}: identities.0.user: "), lines


# --------------------------------------------------------------------------- proven identities


@pytest.fixture
def sox(harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Harness:
    """prod under sox, with a registry of its own: nobody in it until a test registers them
    (the kit registers the people and the CI system when it starts a deployment)."""
    monkeypatch.setenv("ZDP_APPROVER_REGISTRY", str(tmp_path / "approvers"))
    harness.config.apps[APP].environments["prod"] = EnvironmentConfig(
        criticality="low", approvers=["alice", "bob"], min_approvals=1,
        compliance_profiles=["sox"],
    )  # fmt: skip
    return harness


async def test_a_slack_approval_in_sox_carries_the_bots_attestation(
    sox: Harness, slack: SlackWorld
) -> None:
    sox.ensure_registered("slack-bot")
    handle, status = await _awaiting(sox)
    assert status.identities_required
    message = await slack.post_approval(status)
    assert (await slack.click(message, APPROVE_ACTION, BOB)).status_code == 200
    result = await asyncio.wait_for(handle.result(), 60)

    assert result.outcome is Outcome.promoted
    proof = result.status.approvals[0].proof
    assert proof is not None and proof.proven and proof.user == "bob"
    assert proof.attested_by == "slack-bot" and proof.channel == "slack"
    assert proof.line() == "bob via Slack (workspace T0001, user U0002), attested by slack-bot"


async def test_a_slack_approval_is_refused_when_the_bots_key_is_not_registered(
    sox: Harness, slack: SlackWorld
) -> None:
    remove(registry_dir(sox.home), "slack-bot", TEST_ADMIN, None)  # an administrator removed it
    handle, status = await _awaiting(sox)
    message = await slack.post_approval(status)
    assert (await slack.click(message, APPROVE_ACTION, BOB)).status_code == 200

    note = block_text((await slack.update_of(message)).params["blocks"])
    assert (
        "<@U0002> (bob) could not approve: slack-bot has no registered key, so the request "
        "proves nothing" in note
    )
    await _still_awaiting(sox, handle)
    refused = [
        e for e in await deployments.timeline(sox.client, handle.id) if e.kind == "decision_refused"
    ]
    assert refused and refused[-1].data["channel"] == "slack"


# --------------------------------------------------------------------------- bound to a run


async def test_a_stale_message_cannot_approve_the_next_deployment(
    harness: Harness, slack: SlackWorld
) -> None:
    """The message for 2.0.0 outlives its deployment (aborted); a click on it must not approve
    the next deployment of the same app and environment (6.6.6), which runs under the same
    deployment id."""
    first, status = await _awaiting(harness)
    stale = await slack.post_approval(status)
    await deployments.abort(harness.client, first.id, "alice", "wrong build")
    assert (await asyncio.wait_for(first.result(), 60)).outcome is Outcome.aborted
    second, _ = await _awaiting(harness, release=harness.signer.release("6.6.6"))

    assert (await slack.click(stale, APPROVE_ACTION, BOB)).status_code == 200
    note = block_text((await slack.update_of(stale)).params["blocks"])
    assert (
        "could not approve: this message is for a deployment of deploy-webshop-prod that has "
        "ended (aborted); nothing was changed" in note
    )
    assert DECISION_BLOCK not in _blocks_ids((await slack.update_of(stale)).params["blocks"])
    await _still_awaiting(harness, second)

    # A hand-made payload naming the running run but another release is refused too.
    current = await harness.status(second)
    forged = f"{second.id}|{current.run_id}|sha256:{'ee' * 32}"
    assert (await slack.click(stale, APPROVE_ACTION, BOB, forged)).status_code == 200
    note = block_text((await slack.update_of(stale, 2)).params["blocks"])
    assert f"this message is for release sha256:{'ee' * 32}, not the one this run deploys" in note
    await _still_awaiting(harness, second)


async def test_the_approval_message_loses_its_buttons_when_the_deployment_ends(
    kit: Harness, slack: SlackWorld
) -> None:
    kit.notifier = SlackNotifier(BOT_TOKEN, {APP: CHANNEL}, slack.api.api_url)
    async with kit.worker():
        handle = await kit.start(kit.request("2.0.0", environment="prod"))
        message = await slack.approval_posted()
        await deployments.abort(kit.client, handle.id, "alice", "not today")
        assert (await asyncio.wait_for(handle.result(), 60)).outcome is Outcome.aborted

    closed = await slack.update_of(message)
    assert DECISION_BLOCK not in _blocks_ids(closed.params["blocks"])
    assert (
        "webshop 2.0.0 → prod aborted: aborted by alice: not today; nothing is left to decide"
        in (block_text(closed.params["blocks"]))
    )
    assert closed.params["text"].startswith("Ended: webshop 2.0.0 → prod aborted")
