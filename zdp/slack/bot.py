"""The Slack bot: Approve/Reject clicks and `/zdp` commands become workflow updates and signals.

It is a client like the CLI: every decision goes through zdp.deployments, so the workflow's
validators decide and their refusals reach Slack word for word. Bolt verifies each request's
signature and timestamp (a forgery or a stale request gets 401), the replay guard drops a
repeat, and only Slack users listed in slack.yaml act, as the approver they are mapped to.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from temporalio.client import Client
from temporalio.exceptions import TemporalError
from temporalio.service import RPCError

from zdp import deployments
from zdp.errors import ZdpError
from zdp.models import ApprovalSignature, DeploymentStatus, RequestAction
from zdp.settings import settings
from zdp.signing import load_private_key
from zdp.slack.config import (
    SLACK_BOT_TOKEN_ENV_VAR,
    SLACK_SIGNING_SECRET_ENV_VAR,
    SlackConfig,
    slack_api_url,
)
from zdp.slack.messages import (
    APPROVE_ACTION,
    REJECT_ACTION,
    USAGE,
    ButtonTarget,
    escape,
    parse_button_value,
    signing_command,
    status_text,
    with_note,
)
from zdp.slack.replay import ReplayGuard

log = logging.getLogger(__name__)

# Slack wants an answer to a slash command within 3 s; a slower one is sent to response_url.
COMMAND_ANSWER_SECONDS = 2.0
COMMANDS = ("status", "pause", "resume", "abort")


@dataclass(frozen=True)
class BotSettings:
    """What the bot needs from Slack: the signing secret, the bot token, the Web API URL."""

    signing_secret: str
    bot_token: str
    api_url: str

    @classmethod
    def from_env(cls) -> BotSettings:
        """From ZDP_SLACK_SIGNING_SECRET, ZDP_SLACK_BOT_TOKEN and ZDP_SLACK_API_URL."""
        found = settings()
        values = {
            SLACK_SIGNING_SECRET_ENV_VAR: found.SLACK_SIGNING_SECRET or "",
            SLACK_BOT_TOKEN_ENV_VAR: found.SLACK_BOT_TOKEN or "",
        }
        missing = [name for name, value in values.items() if not value]
        if missing:
            one = len(missing) == 1
            raise ZdpError(
                f"{' and '.join(missing)} {'is' if one else 'are'} not set: copy "
                f"{'it' if one else 'them'} from your Slack app's settings (Basic Information: "
                "Signing Secret; OAuth & Permissions: Bot User OAuth Token)"
            )
        return cls(
            signing_secret=values[SLACK_SIGNING_SECRET_ENV_VAR],
            bot_token=values[SLACK_BOT_TOKEN_ENV_VAR],
            api_url=slack_api_url(),
        )


BOT_KEY_ENV = "ZDP_SLACK_BOT_KEY"
BOT_IDENTITY_ENV = "ZDP_SLACK_BOT_IDENTITY"


@dataclass(frozen=True)
class Attestor:
    """The bot's own registered identity and key: it signs each request on behalf of the
    Slack user it mapped (Slack authenticated them; the bot attests it)."""

    identity: str
    key: Ed25519PrivateKey

    @classmethod
    def from_env(cls) -> Attestor | None:
        """From ZDP_SLACK_BOT_KEY (an unencrypted private key file, from the bot's secret
        store) and ZDP_SLACK_BOT_IDENTITY (default slack-bot); None when no key is set, and
        requests then go unsigned (refused where identities must be proven)."""
        found = settings()
        if found.SLACK_BOT_KEY is None:
            return None
        return cls(found.SLACK_BOT_IDENTITY, load_private_key(found.SLACK_BOT_KEY))

    async def sign(
        self,
        temporal: Client,
        workflow_id: str,
        action: RequestAction,
        actor: str,
        team: str | None,
        user: str | None,
        run_id: str | None = None,
    ) -> ApprovalSignature:
        return await deployments.sign_request(
            temporal,
            workflow_id,
            action,
            actor,
            "slack",
            self.key,
            attested_by=self.identity,
            via={"workspace": team or "?", "user": user or "?"},
            run_id=run_id,
        )


@dataclass(frozen=True)
class Reply:
    """What the bot says after a click; `decided_by` is set when the workflow took it."""

    text: str
    decided_by: str | None = None
    final: bool = False


class ApprovalBot:
    """The listeners: they map the Slack user, call zdp.deployments and report in words."""

    def __init__(
        self, temporal: Client, identities: SlackConfig, attestor: Attestor | None = None
    ) -> None:
        self.temporal = temporal
        self.identities = identities
        self.attestor = attestor

    # ------------------------------------------------------------------ buttons

    async def on_decision(
        self, ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], client: AsyncWebClient
    ) -> None:
        await ack()
        kind = "approve" if action.get("action_id") == APPROVE_ACTION else "reject"
        team, user = clicker(body)
        value = str(action.get("value", ""))
        target = parse_button_value(value)
        if target is None:
            reply = Reply(
                f":no_entry: <@{escape(user or '?')}> could not {kind}: this message does not "
                "name the run it was posted for (an older zdp posted it), so it cannot act on "
                "any run; use the newest message or `zdp approve`. Nothing was changed",
                final=True,
            )
        else:
            reply = await self.decide(kind, target.deployment_id, team, user, target)
        log.info("%s %s by Slack user %s/%s: %s", kind, value, team, user, reply.text)
        message = body.get("message") or {}
        channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get(
            "channel_id"
        )
        ts = message.get("ts") or (body.get("container") or {}).get("message_ts")
        if not channel or not ts:
            log.warning("click without a message to update: %s", reply.text)
            return
        blocks = with_note(
            list(message.get("blocks") or []),
            reply.text,
            decided_by=reply.decided_by,
            final=reply.final,
        )
        try:
            await client.chat_update(channel=channel, ts=ts, text=reply.text, blocks=blocks)
        except SlackApiError as err:
            log.error("chat.update in %s failed: %s", channel, err.response.get("error", err))

    async def decide(
        self,
        kind: str,
        workflow_id: str,
        team: str | None,
        user: str | None,
        target: ButtonTarget | None = None,
    ) -> Reply:
        """Approve or reject as the mapped approver, exactly the run and release the message
        was posted for (`target`); every outcome is a sentence for Slack."""
        who = f"<@{escape(user or '?')}>"
        approver = self.identities.approver_for(team, user)
        if approver is None:
            return Reply(unmapped(team, user, kind))
        actor = f"{who} ({escape(approver)})"
        run_id = target.run_id if target else None
        try:
            if target is not None:
                ended = await deployments.run_ended(self.temporal, workflow_id, target.run_id)
                if ended is not None:
                    return Reply(
                        f":no_entry: {actor} could not {kind}: this message is for a "
                        f"deployment of {escape(workflow_id)} that has ended ({escape(ended)}); "
                        "nothing was changed",
                        final=True,
                    )
                current = await deployments.run_status(self.temporal, workflow_id, target.run_id)
                if current.release_digest != target.release_digest:
                    return Reply(
                        f":no_entry: {actor} could not {kind}: this message is for release "
                        f"{escape(target.release_digest)}, not the one this run deploys; "
                        "nothing was changed",
                        final=True,
                    )
            else:
                current = await deployments.status(self.temporal, workflow_id)
            if current.signature_required:
                command = signing_command(workflow_id, current.environment, approver, kind)
                return Reply(
                    f":lock: {actor}: a button cannot {kind} this deployment, because 21 CFR "
                    "Part 11 requires your electronic signature. Sign it from a terminal:\n"
                    f"```{escape(command)}```"
                )
            proof = None
            if self.attestor is not None:
                decision: RequestAction = "approve" if kind == "approve" else "reject"
                proof = await self.attestor.sign(
                    self.temporal, workflow_id, decision, approver, team, user, run_id
                )
            action = deployments.approve if kind == "approve" else deployments.reject
            outcome = await action(
                self.temporal,
                workflow_id,
                approver,
                # An attested request names the workspace and user itself.
                None if proof else f"via Slack ({team}/{user})",
                channel="slack",
                proof=proof,
                run_id=run_id,
            )
            after = await deployments.status(self.temporal, workflow_id)
        except deployments.RequestRefused as refused:
            return Reply(f":no_entry: {actor} could not {kind}: {escape(str(refused))}")
        except (ZdpError, RPCError, TemporalError) as err:
            return Reply(
                f":warning: {actor} could not {kind} {escape(workflow_id)}: {escape(str(err))}"
            )
        except Exception:  # a bug: say so in Slack rather than leave the click unanswered
            log.exception("%s %s by %s/%s failed", kind, workflow_id, team, user)
            return Reply(
                f":warning: {actor} could not {kind}: unexpected error (see the bot's log)"
            )
        mark = ":white_check_mark:" if kind == "approve" else ":x:"
        return Reply(f"{mark} {actor} via Slack: {escape(outcome)}", approver, settled(after))

    # ------------------------------------------------------------------ /zdp

    async def on_command(
        self, ack: AsyncAck, command: dict[str, Any], respond: AsyncRespond
    ) -> None:
        words = str(command.get("text", "")).split()
        if len(words) != 2 or words[0] not in COMMANDS:
            await ack(text=escape(USAGE), response_type="ephemeral")
            return
        sub, workflow_id = words
        team, user = command.get("team_id"), command.get("user_id")
        log.info("/zdp %s %s by Slack user %s/%s", sub, workflow_id, team, user)
        work = asyncio.ensure_future(self.run_command(sub, workflow_id, team, user))
        try:
            text = await asyncio.wait_for(asyncio.shield(work), COMMAND_ANSWER_SECONDS)
        except TimeoutError:
            # Temporal is slow to answer: acknowledge now, answer through response_url later.
            await ack(
                text=f"{sub} {escape(workflow_id)}: working on it…", response_type="ephemeral"
            )
            await respond(text=await work, response_type="ephemeral", replace_original=False)
            return
        await ack(text=text, response_type="ephemeral")

    async def run_command(
        self, sub: str, workflow_id: str, team: str | None, user: str | None
    ) -> str:
        """The answer to `/zdp <sub> <id>`: only for mapped users (status too: a deployment's
        state is not for anyone in the workspace); the workflow decides who may pause, resume
        and abort."""
        try:
            actor = self.identities.approver_for(team, user)
            if actor is None:
                return unmapped(team, user, sub)
            if sub == "status":
                return status_text(await deployments.status(self.temporal, workflow_id))
            name: Literal["pause", "resume", "abort"] = (
                "abort" if sub == "abort" else "pause" if sub == "pause" else "resume"
            )
            if name != "abort" and not await deployments.is_running(self.temporal, workflow_id):
                return f"{escape(workflow_id)} is not running"
            proof = None
            if self.attestor is not None:
                proof = await self.attestor.sign(
                    self.temporal, workflow_id, name, actor, team, user
                )
            await deployments.control(
                self.temporal,
                workflow_id,
                name,
                actor,
                None if proof else f"via Slack ({team}/{user})",
                "slack",
                proof,
            )
        except (ZdpError, RPCError, TemporalError) as err:
            return f"{sub} {escape(workflow_id)} failed: {escape(str(err))}"
        except Exception:  # a bug: say so in Slack rather than leave the command unanswered
            log.exception("/zdp %s %s by %s/%s failed", sub, workflow_id, team, user)
            return f"{sub} {escape(workflow_id)} failed: unexpected error (see the bot's log)"
        return f"{sub} sent to {escape(workflow_id)} (as {escape(actor)})"


def clicker(body: dict[str, Any]) -> tuple[str | None, str | None]:
    """(team id, user id) of whoever clicked: the user's own workspace, which differs from the
    app's in a shared channel, so a user is never taken for someone of another team."""
    user = body.get("user") or {}
    team = user.get("team_id") or (body.get("team") or {}).get("id")
    return team, user.get("id")


def unmapped(team: str | None, user: str | None, what: str) -> str:
    return (
        f":no_entry: <@{escape(user or '?')}> could not {what}: Slack user {escape(user or '?')} "
        f"of team {escape(team or '?')} is not mapped to an approver identity "
        "(add it under identities in slack.yaml); nothing was changed"
    )


def settled(status: DeploymentStatus) -> bool:
    """True when no more decisions are wanted: a rejection, or enough approvals."""
    approvals = [a for a in status.approvals if a.decision == "approve"]
    rejected = any(a.decision == "reject" for a in status.approvals)
    return rejected or len(approvals) >= status.approvals_required


def build_bolt_app(
    settings: BotSettings,
    identities: SlackConfig,
    temporal: Client,
    attestor: Attestor | None = None,
) -> AsyncApp:
    """The Bolt app in HTTP mode with request verification on and the replay guard after it."""
    bot = ApprovalBot(temporal, identities, attestor)
    # Bolt logs the whole body of a refused request at INFO (zdp.slack.server says it in one
    # line instead); its loggers copy this one's level when the app is built.
    bolt_logger = logging.getLogger("zdp.slack.bolt")
    bolt_logger.setLevel(logging.WARNING)
    app = AsyncApp(
        name="zdp-slack-bot",
        logger=bolt_logger,
        signing_secret=settings.signing_secret,
        client=AsyncWebClient(token=settings.bot_token, base_url=settings.api_url),
        request_verification_enabled=True,
        # Runs right after verification and before authorization: a replay costs no API call.
        before_authorize=ReplayGuard(),
    )
    app.action(APPROVE_ACTION)(bot.on_decision)
    app.action(REJECT_ACTION)(bot.on_decision)
    app.command("/zdp")(bot.on_command)
    return app
