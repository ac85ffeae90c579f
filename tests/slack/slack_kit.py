"""The Slack test kit: users, the identity map, requests signed as Slack signs them, and a
`SlackWorld` that sends them to the bot and reads what it said in the fake Slack."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx

from tests.kit import APP
from tests.slack.fake_slack import BOT_USER, Call, FakeSlack
from zdp.models import DeploymentStatus
from zdp.notify import Notification, SlackNotifier, top_factors

SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
BOT_TOKEN = "xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy"
TEAM = "T0001"
CHANNEL = "#deploys"


@dataclass(frozen=True)
class SlackUser:
    team: str
    id: str
    name: str


ALICE = SlackUser(TEAM, "U0001", "alice")
BOB = SlackUser(TEAM, "U0002", "bob")
CI_BOT = SlackUser(TEAM, "U0003", "ci-bot")  # mapped to the initiator, to try self-approval
MALLORY = SlackUser(TEAM, "U0666", "mallory")  # not in the identity map
ALICE_ELSEWHERE = SlackUser("T0002", "U0001", "alice")  # alice's user id, another workspace

IDENTITIES = {
    "identities": [
        {"team": u.team, "user": u.id, "approver": u.name} for u in (ALICE, BOB, CI_BOT)
    ],
    "channels": {APP: CHANNEL},
}


@dataclass
class BotProcess:
    url: str
    pid: int
    log: Path


# --------------------------------------------------------------------------- signed requests


def sign(body: bytes, timestamp: int, secret: str = SIGNING_SECRET) -> dict[str, str]:
    """Slack's headers for this body: v0 HMAC-SHA256 of `v0:{timestamp}:{body}`."""
    base = f"v0:{timestamp}:".encode() + body
    signature = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": str(timestamp),
        "X-Slack-Signature": signature,
    }


@dataclass
class Posted:
    """A message in the fake Slack: where it is and what it says."""

    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]]


@dataclass
class SlackWorld:
    """The bot's Request URL, the fake Slack it talks to, and requests as Slack sends them."""

    bot: BotProcess
    api: FakeSlack

    async def send(self, body: bytes, headers: dict[str, str]) -> httpx.Response:
        async with httpx.AsyncClient(timeout=30) as client:
            return await client.post(self.bot.url, content=body, headers=headers)

    async def post_signed(self, body: bytes, timestamp: int | None = None) -> httpx.Response:
        return await self.send(body, sign(body, timestamp or int(time.time())))

    def click_body(
        self, message: Posted, action_id: str, who: SlackUser, value: str | None = None
    ) -> bytes:
        """A block_actions payload for a click on `action_id` in `message` (carrying `value`
        instead of the button's, for a hand-made payload)."""
        value = value or next(
            (
                element["value"]
                for block in message.blocks
                if block["type"] == "actions"
                for element in block["elements"]
                if element["action_id"] == action_id
            ),
            # No such button (a Part 11 message): the id from the message, as a stale or
            # hand-made payload would carry it.
            f"deploy-{APP}-prod",
        )
        payload = {
            "type": "block_actions",
            "user": {"id": who.id, "username": who.name, "name": who.name, "team_id": who.team},
            "api_app_id": "AZDP00001",
            "token": "legacy-verification-token",
            "container": {
                "type": "message",
                "message_ts": message.ts,
                "channel_id": message.channel,
                "is_ephemeral": False,
            },
            "trigger_id": f"{uuid.uuid4().int % 10**12}.1.{uuid.uuid4().hex[:8]}",
            "team": {"id": who.team, "domain": "zdp-test"},
            "enterprise": None,
            "is_enterprise_install": False,
            "channel": {"id": message.channel, "name": message.channel.lstrip("#")},
            "message": {
                "type": "message",
                "user": BOT_USER,
                "ts": message.ts,
                "text": message.text,
                "blocks": message.blocks,
            },
            "state": {"values": {}},
            "response_url": f"{self.api.url}/response/{uuid.uuid4().hex}",
            "actions": [
                {
                    "action_id": action_id,
                    "block_id": "zdp_decision",
                    "value": value,
                    "type": "button",
                    "action_ts": f"{time.time():.6f}",
                }
            ],
        }
        return urlencode({"payload": json.dumps(payload)}).encode()

    async def click(
        self, message: Posted, action_id: str, who: SlackUser, value: str | None = None
    ) -> httpx.Response:
        return await self.post_signed(self.click_body(message, action_id, who, value))

    def command_body(self, text: str, who: SlackUser) -> bytes:
        return urlencode(
            {
                "token": "legacy-verification-token",
                "team_id": who.team,
                "team_domain": "zdp-test",
                "channel_id": "C0DEPLOYS",
                "channel_name": "deploys",
                "user_id": who.id,
                "user_name": who.name,
                "command": "/zdp",
                "text": text,
                "api_app_id": "AZDP00001",
                "is_enterprise_install": "false",
                "response_url": f"{self.api.url}/response/{uuid.uuid4().hex}",
                "trigger_id": f"{uuid.uuid4().int % 10**12}.1.{uuid.uuid4().hex[:8]}",
            }
        ).encode()

    async def command(self, text: str, who: SlackUser) -> str:
        """The ephemeral answer to `/zdp <text>` (from the response, or from response_url)."""
        response = await self.post_signed(self.command_body(text, who))
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["response_type"] == "ephemeral"
        return str(answer["text"])

    async def post_approval(self, status: DeploymentStatus) -> Posted:
        """The approval message for this deployment, posted by SlackNotifier to the fake."""
        notifier = SlackNotifier(BOT_TOKEN, {APP: CHANNEL}, self.api.api_url)
        await notifier.send(awaiting_approval(status))
        call = self.api.of("chat.postMessage")[-1]
        return Posted(CHANNEL, call.answer["ts"], call.params["text"], call.params["blocks"])

    async def approval_posted(self) -> Posted:
        """The approval message the workflow's notifier posted (waiting for it)."""
        posted = await self.api.wait_for("chat.postMessage", lambda c: "blocks" in c.params)
        return Posted(CHANNEL, posted.answer["ts"], posted.params["text"], posted.params["blocks"])

    async def update_of(self, message: Posted, count: int = 1) -> Call:
        """The `count`-th chat.update of `message`, waiting for it."""
        await self.api.wait_for(
            "chat.update",
            lambda c: (
                len([u for u in self.api.of("chat.update") if u.params["ts"] == message.ts])
                >= count
            ),
        )
        return [u for u in self.api.of("chat.update") if u.params["ts"] == message.ts][count - 1]


def awaiting_approval(status: DeploymentStatus, initiator: str = "ci-bot") -> Notification:
    """The notification the engine sends when this deployment starts waiting for approval."""
    return Notification(
        kind="awaiting_approval",
        deployment_id=status.deployment_id,
        app=status.app,
        environment=status.environment,
        version=status.version,
        initiator=initiator,
        change_ref="CHG-1001",
        risk_score=status.risk.score if status.risk else None,
        risk_level=status.risk.level if status.risk else None,
        top_factors=top_factors(status.risk) if status.risk else [],
        approvals_required=status.approvals_required,
        allowed_approvers=["alice", "bob", "carol"],
        signature_required=status.signature_required,
        at=datetime.now(UTC),
        run_id=status.run_id,
        release_digest=status.release_digest,
    )


def unescape(text: str) -> str:
    """mrkdwn as a person reads it."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def block_text(blocks: list[dict[str, Any]]) -> str:
    """All the words in a message's blocks, unescaped."""
    parts: list[str] = []
    for block in blocks:
        for key in ("text",):
            if isinstance(block.get(key), dict):
                parts.append(block[key]["text"])
        for item in block.get("fields", []):
            parts.append(item["text"])
        for element in block.get("elements", []):
            if isinstance(element.get("text"), dict):
                parts.append(element["text"]["text"])
    return unescape("\n".join(parts))
