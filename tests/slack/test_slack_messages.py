"""What SlackNotifier posts: the approval message with its buttons, and one line per event."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from tests.slack.fake_slack import FakeSlack
from tests.slack.slack_kit import BOT_TOKEN, CHANNEL, block_text, unescape
from zdp.errors import ZdpError
from zdp.models import DeploymentStatus, Phase, RiskAssessment, RiskFactor, RiskLevel, Strategy
from zdp.notify import Notification, SlackNotifier
from zdp.slack.messages import APPROVE_ACTION, REJECT_ACTION, status_text, top_factors

AT = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def _awaiting(**overrides: Any) -> Notification:
    fields: dict[str, Any] = {
        "kind": "awaiting_approval",
        "deployment_id": "deploy-webshop-prod",
        "app": "webshop",
        "environment": "prod",
        "version": "2.0.0",
        "initiator": "ci-bot",
        "change_ref": "CHG-1001",
        "risk_score": 42,
        "risk_level": RiskLevel.medium,
        "top_factors": ["migrations +15", "business_hours +5"],
        "approvals_required": 1,
        "allowed_approvers": ["alice", "bob", "carol"],
        "at": AT,
        "run_id": "0190c1a2-run",
        "release_digest": "sha256:" + "ab" * 32,
    }
    fields.update(overrides)
    return Notification(**fields)


async def _post(fake: FakeSlack, n: Notification) -> dict[str, Any]:
    await SlackNotifier(BOT_TOKEN, {"webshop": CHANNEL}, fake.api_url).send(n)
    (call,) = fake.of("chat.postMessage")
    assert call.headers["authorization"] == f"Bearer {BOT_TOKEN}"
    return call.params


async def test_approval_message_shows_who_what_risk_and_buttons(fake_slack: FakeSlack) -> None:
    params = await _post(fake_slack, _awaiting())

    assert params["channel"] == CHANNEL
    assert params["text"] == (
        "Approval needed: webshop 2.0.0 → prod, started by ci-bot, risk 42 (medium)"
    )
    words = block_text(params["blocks"])
    for shown in (
        "Approval needed: webshop 2.0.0 → prod",
        "*App*\nwebshop",
        "*Version*\n2.0.0",
        "*Environment*\nprod",
        "*Started by*\nci-bot",
        "*Risk*\n42 (medium)",
        "*Change*\nCHG-1001",
        "*Top risk factors:* migrations +15, business_hours +5",
        "*Who may approve:* alice, bob, carol (1 approval needed, not from whoever started it)",
    ):
        assert shown in words, shown
    (actions,) = [b for b in params["blocks"] if b["type"] == "actions"]
    buttons = {e["action_id"]: e for e in actions["elements"]}
    assert set(buttons) == {APPROVE_ACTION, REJECT_ACTION}
    # Each button is bound to the run and the release the message is about.
    assert {b["value"] for b in buttons.values()} == {
        "deploy-webshop-prod|0190c1a2-run|sha256:" + "ab" * 32
    }
    assert buttons[APPROVE_ACTION]["style"] == "primary"
    assert buttons[REJECT_ACTION]["style"] == "danger" and "confirm" in buttons[REJECT_ACTION]


async def test_part11_message_has_no_approve_button_but_the_signing_command(
    fake_slack: FakeSlack,
) -> None:
    params = await _post(fake_slack, _awaiting(signature_required=True, approvals_required=2))

    assert all(b["type"] != "actions" for b in params["blocks"])
    words = block_text(params["blocks"])
    assert (
        'zdp approve deploy-webshop-prod --as <you> --key <your key> --meaning "approve release '
        'to prod" --prompt' in words
    )
    assert "2 approvals needed" in words


@pytest.mark.parametrize(
    ("overrides", "line"),
    [
        ({"kind": "started"}, "webshop 2.0.0 → prod started by ci-bot (change CHG-1001)"),
        ({"kind": "step_passed", "step": "25%"}, "webshop 2.0.0 → prod passed the 25% step"),
        (
            {"kind": "rolled_back", "cause": "health gate fail: 5xx ratio 0.40 > 0.01"},
            "webshop 2.0.0 → prod rolled back: health gate fail: 5xx ratio 0.40 > 0.01",
        ),
        ({"kind": "promoted"}, "webshop 2.0.0 → prod promoted"),
        (
            {"kind": "blocked", "cause": "freeze window"},
            "webshop 2.0.0 → prod blocked: freeze window",
        ),
        ({"kind": "rejected", "cause": "not today"}, "webshop 2.0.0 → prod rejected: not today"),
        ({"kind": "failed", "version": None}, "webshop → prod failed"),
    ],
)
async def test_other_events_are_one_plain_line(
    fake_slack: FakeSlack, overrides: dict[str, Any], line: str
) -> None:
    params = await _post(fake_slack, _awaiting(**overrides))
    assert unescape(params["text"]) == line
    assert "blocks" not in params
    if ">" in line:
        assert "&gt;" in params["text"]  # mrkdwn control characters are escaped on the wire


async def test_slack_errors_and_unknown_apps_are_one_line(fake_slack: FakeSlack) -> None:
    notifier = SlackNotifier(BOT_TOKEN, {"webshop": CHANNEL}, fake_slack.api_url)
    fake_slack.errors["chat.postMessage"] = "channel_not_found"
    with pytest.raises(
        ZdpError, match=r"^Slack refused the message to #deploys: channel_not_found$"
    ):
        await notifier.send(_awaiting())
    with pytest.raises(ZdpError, match="no Slack channel for app 'billing'"):
        await notifier.send(_awaiting(app="billing"))
    unreachable = SlackNotifier(BOT_TOKEN, {"webshop": CHANNEL}, "http://127.0.0.1:9/api")
    with pytest.raises(ZdpError, match=r"^Slack API at http://127\.0\.0\.1:9/api/ unreachable"):
        await unreachable.send(_awaiting())


def test_status_text_has_phase_traffic_risk_and_approvals() -> None:
    status = DeploymentStatus(
        deployment_id="deploy-webshop-prod",
        app="webshop",
        environment="prod",
        version="2.0.0",
        strategy=Strategy.canary,
        phase=Phase.shift,
        paused=True,
        weights={"canary": 25, "stable": 75},
        step_index=2,
        steps=[1, 5, 25, 100],
        risk=RiskAssessment(
            score=42,
            level=RiskLevel.medium,
            factors=[
                RiskFactor(name="size", detail="", points=5),
                RiskFactor(name="migrations", detail="", points=15),
                RiskFactor(name="freeze_window", detail="", points=0),
            ],
        ),
        approvals_required=1,
    )
    assert status_text(status) == (
        "*deploy-webshop-prod*: webshop 2.0.0 → prod (canary)\n"
        "phase: shift (paused)\n"
        "traffic: canary 25%, stable 75%\n"
        "step: 3 of 4 [1, 5, 25, 100]\n"
        "risk: 42 (medium): migrations +15, size +5\n"
        "approvals: 0 of 1 (none yet)"
    )
    assert status.risk is not None and top_factors(status.risk, limit=1) == ["migrations +15"]
