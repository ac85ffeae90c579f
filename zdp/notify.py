"""Tell people what a deployment is doing: a Slack message or a signed webhook per event.

A `Notifier` sends one `Notification`. `notifier_from_env()` builds the ones configured in the
environment; with several, each notification goes to all of them and one error lists those
that failed.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
from collections.abc import Sequence
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import httpx
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from zdp.errors import ZdpError
from zdp.models import (
    FINAL_KINDS,
    MessageRef,
    Notification,
    NotificationKind,
    NotifyReceipt,
)
from zdp.settings import settings
from zdp.slack.config import (
    DEFAULT_SLACK_API_URL,
    load_slack_config,
    slack_api_url,
)
from zdp.slack.messages import (
    approval_message,
    closed_approval_message,
    event_line,
    top_factors,
)

__all__ = [
    "FINAL_KINDS",
    "CompositeNotifier",
    "MessageRef",
    "Notification",
    "NotificationKind",
    "Notifier",
    "NotifyReceipt",
    "SlackNotifier",
    "WebhookNotifier",
    "notifier_from_env",
    "top_factors",
    "webhook_signature",
]

WEBHOOK_URL_ENV_VAR = "ZDP_NOTIFY_WEBHOOK_URL"
WEBHOOK_SECRET_ENV_VAR = "ZDP_NOTIFY_WEBHOOK_SECRET"
SIGNATURE_HEADER = "X-Zdp-Signature"
WEBHOOK_TIMEOUT_SECONDS = 5.0


class Notifier(Protocol):
    async def send(self, n: Notification) -> list[MessageRef]:
        """Deliver `n`; the messages posted that may be updated later (none for a webhook)."""
        ...


_TOKEN_LIKE = re.compile(r"^(?=.*[0-9])[A-Za-z0-9_-]{8,}$|^[A-Za-z0-9_-]{20,}$")


def redact_url(url: str) -> str:
    """`url` as it may be recorded: no user or password, no query, and of the path only its
    first segment (when it does not look like a token): tokens hide in paths (Slack's
    /services/T…/B…/<secret>) as often as in queries."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(unparseable URL)"
    netloc = ("***@" if parts.username or parts.password else "") + host + port
    segments = [s for s in parts.path.split("/") if s]
    path = ""
    if segments:
        path = "/***" if _TOKEN_LIKE.match(segments[0]) else f"/{segments[0]}"
        path += "/***" if len(segments) > 1 else ""
    query = "?***" if parts.query else ""
    return urlunsplit((parts.scheme, netloc, path, "", "")) + query


def webhook_signature(secret: bytes, body: bytes) -> str:
    """The X-Zdp-Signature value: `sha256=` and the hex HMAC-SHA256 of the exact body."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


class WebhookNotifier:
    """POSTs the notification as JSON; signed with HMAC-SHA256 when a secret is set."""

    def __init__(self, url: str, secret: bytes | None = None) -> None:
        self.url = url
        self.secret = secret

    async def send(self, n: Notification) -> list[MessageRef]:
        body = n.model_dump_json().encode()
        headers = {"Content-Type": "application/json"}
        if self.secret:
            headers[SIGNATURE_HEADER] = webhook_signature(self.secret, body)
        try:
            async with httpx.AsyncClient(timeout=WEBHOOK_TIMEOUT_SECONDS) as client:
                response = await client.post(self.url, content=body, headers=headers)
        except httpx.HTTPError as err:
            raise ZdpError(
                f"webhook {redact_url(self.url)} unreachable: {_no_url(err, self.url)}"
            ) from None
        if not response.is_success:
            raise ZdpError(
                f"webhook {redact_url(self.url)} answered {response.status_code}: "
                f"{response.text[:200].replace(self.url, redact_url(self.url))}"
            )
        return []


def _no_url(err: Exception, url: str) -> str:
    """The error's text with the full URL (httpx puts it in some messages) redacted."""
    text = str(err) or type(err).__name__
    return text.replace(url, redact_url(url))


class SlackNotifier:
    """Posts to the app's channel: the approval message with buttons, else one plain line."""

    def __init__(
        self, token: str, channels: dict[str, str], api_url: str = DEFAULT_SLACK_API_URL
    ) -> None:
        self.channels = dict(channels)
        base = api_url if api_url.endswith("/") else api_url + "/"
        self.client = AsyncWebClient(token=token, base_url=base)

    async def send(self, n: Notification) -> list[MessageRef]:
        channel = self.channels.get(n.app)
        if channel is None:
            raise ZdpError(
                f"no Slack channel for app '{n.app}': add it under channels in slack.yaml"
            )
        if n.kind == "awaiting_approval":
            text, blocks = approval_message(n)
        else:
            text, blocks = event_line(n), None
        try:
            if n.kind in FINAL_KINDS:
                await self._close(n)
            posted = await self.client.chat_postMessage(channel=channel, text=text, blocks=blocks)
        except SlackApiError as err:
            raise ZdpError(
                f"Slack refused the message to {channel}: {err.response.get('error', err)}"
            ) from None
        except (aiohttp.ClientError, TimeoutError) as err:
            raise ZdpError(
                f"Slack API at {self.client.base_url} unreachable: {err or type(err).__name__}"
            ) from None
        if n.kind != "awaiting_approval":
            return []
        return [MessageRef(channel=str(posted.get("channel") or channel), ts=str(posted["ts"]))]

    async def _close(self, n: Notification) -> None:
        """The deployment ended: its approval messages lose their buttons and say how it
        ended, so nobody clicks on a decision that no longer exists."""
        text, blocks = closed_approval_message(n)
        for message in n.close:
            await self.client.chat_update(
                channel=message.channel, ts=message.ts, text=text, blocks=blocks
            )


class CompositeNotifier:
    """Sends to every notifier at once; one error lists each one that failed."""

    def __init__(self, notifiers: Sequence[Notifier]) -> None:
        self.notifiers = list(notifiers)

    async def send(self, n: Notification) -> list[MessageRef]:
        results = await asyncio.gather(
            *(notifier.send(n) for notifier in self.notifiers), return_exceptions=True
        )
        failures: list[str] = []
        posted: list[MessageRef] = []
        for notifier, result in zip(self.notifiers, results, strict=True):
            if isinstance(result, Exception):
                failures.append(f"{type(notifier).__name__}: {result}")
            elif isinstance(result, BaseException):  # cancelled: not a failure to report
                raise result
            else:
                posted.extend(result)
        if failures:
            raise ZdpError(
                f"{len(failures)} of {len(self.notifiers)} notifiers failed: " + "; ".join(failures)
            )
        return posted


def notifier_from_env() -> Notifier | None:
    """Slack when ZDP_SLACK_BOT_TOKEN is set (channels from slack.yaml), a webhook when
    ZDP_NOTIFY_WEBHOOK_URL is set, both together if both; None when neither is."""
    notifiers: list[Notifier] = []
    found = settings()
    token = found.SLACK_BOT_TOKEN
    if token:
        channels = load_slack_config().channels
        notifiers.append(SlackNotifier(token, channels, slack_api_url()))
    url = found.NOTIFY_WEBHOOK_URL
    if url:
        secret = found.NOTIFY_WEBHOOK_SECRET
        notifiers.append(WebhookNotifier(url, secret.encode() if secret else None))
    if not notifiers:
        return None
    return notifiers[0] if len(notifiers) == 1 else CompositeNotifier(notifiers)
