"""Notifiers: a signed webhook, the choice made from the environment, and several at once."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from tests.slack.fake_slack import FakeSlack
from tests.slack.slack_kit import BOT_TOKEN, CHANNEL
from zdp.errors import ConfigError, ZdpError
from zdp.notify import (
    CompositeNotifier,
    Notification,
    SlackNotifier,
    WebhookNotifier,
    notifier_from_env,
)

SECRET = b"webhook-shared-secret"


def _promoted() -> Notification:
    return Notification(
        kind="promoted",
        deployment_id="deploy-webshop-prod",
        app="webshop",
        environment="prod",
        version="2.0.0",
        at=datetime(2026, 3, 2, 10, 0, tzinfo=UTC),
    )


async def test_webhook_posts_json_signed_with_hmac_of_the_exact_body(
    fake_slack: FakeSlack,
) -> None:
    await WebhookNotifier(f"{fake_slack.url}/webhook", SECRET).send(_promoted())

    (call,) = fake_slack.of("webhook")
    assert call.headers["content-type"] == "application/json"
    expected = hmac.new(SECRET, call.body, hashlib.sha256).hexdigest()
    assert call.headers["x-zdp-signature"] == f"sha256={expected}"
    assert Notification.model_validate_json(call.body) == _promoted()


async def test_webhook_without_secret_is_unsigned(fake_slack: FakeSlack) -> None:
    await WebhookNotifier(f"{fake_slack.url}/webhook").send(_promoted())
    (call,) = fake_slack.of("webhook")
    assert "x-zdp-signature" not in call.headers
    assert json.loads(call.body)["kind"] == "promoted"


async def test_webhook_non_2xx_and_unreachable_are_errors(fake_slack: FakeSlack) -> None:
    fake_slack.webhook_status = 503
    url = f"{fake_slack.url}/webhook"
    with pytest.raises(ZdpError, match=f"^{re.escape(f'webhook {url} answered 503: recorded')}$"):
        await WebhookNotifier(url, SECRET).send(_promoted())
    with pytest.raises(ZdpError, match=r"^webhook http://127\.0\.0\.1:9/hook unreachable"):
        await WebhookNotifier("http://127.0.0.1:9/hook").send(_promoted())


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in (
        "ZDP_SLACK_BOT_TOKEN",
        "ZDP_SLACK_API_URL",
        "ZDP_SLACK_CONFIG",
        "ZDP_NOTIFY_WEBHOOK_URL",
        "ZDP_NOTIFY_WEBHOOK_SECRET",
    ):
        monkeypatch.delenv(name, raising=False)
    config = tmp_path / "slack.yaml"
    config.write_text(yaml.safe_dump({"channels": {"webshop": CHANNEL}}))
    monkeypatch.setenv("ZDP_SLACK_CONFIG", str(config))
    return config


def test_no_notifier_configured_is_none(clean_env: Path) -> None:
    assert notifier_from_env() is None


def test_slack_token_gives_a_slack_notifier_with_channels_from_slack_yaml(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, fake_slack: FakeSlack
) -> None:
    monkeypatch.setenv("ZDP_SLACK_BOT_TOKEN", BOT_TOKEN)
    monkeypatch.setenv("ZDP_SLACK_API_URL", fake_slack.api_url.rstrip("/"))
    notifier = notifier_from_env()
    assert isinstance(notifier, SlackNotifier)
    assert notifier.channels == {"webshop": CHANNEL}
    assert notifier.client.base_url == fake_slack.api_url


def test_default_slack_api_url_is_slacks(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZDP_SLACK_BOT_TOKEN", BOT_TOKEN)
    notifier = notifier_from_env()
    assert isinstance(notifier, SlackNotifier)
    assert notifier.client.base_url == "https://slack.com/api/"


def test_webhook_url_gives_a_signed_webhook_notifier(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ZDP_NOTIFY_WEBHOOK_URL", "http://127.0.0.1:9/hook")
    monkeypatch.setenv("ZDP_NOTIFY_WEBHOOK_SECRET", "s3cret")
    notifier = notifier_from_env()
    assert isinstance(notifier, WebhookNotifier)
    assert (notifier.url, notifier.secret) == ("http://127.0.0.1:9/hook", b"s3cret")


def test_a_bad_slack_yaml_is_a_config_error(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clean_env.write_text("channels: {webshop: ''}\n")
    monkeypatch.setenv("ZDP_SLACK_BOT_TOKEN", BOT_TOKEN)
    with pytest.raises(ConfigError) as bad:
        notifier_from_env()
    assert str(bad.value) == f"{clean_env}: channels: the channel of app 'webshop' is empty"


async def test_both_configured_send_to_all_and_one_error_lists_the_failures(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, fake_slack: FakeSlack
) -> None:
    monkeypatch.setenv("ZDP_SLACK_BOT_TOKEN", BOT_TOKEN)
    monkeypatch.setenv("ZDP_SLACK_API_URL", fake_slack.api_url)
    monkeypatch.setenv("ZDP_NOTIFY_WEBHOOK_URL", f"{fake_slack.url}/webhook")
    notifier = notifier_from_env()
    assert isinstance(notifier, CompositeNotifier)

    await notifier.send(_promoted())
    assert [c.method for c in fake_slack.calls] in (
        ["chat.postMessage", "webhook"],
        ["webhook", "chat.postMessage"],
    )

    fake_slack.errors["chat.postMessage"] = "not_in_channel"
    fake_slack.webhook_status = 500
    with pytest.raises(ZdpError) as failed:
        await notifier.send(_promoted())
    assert str(failed.value) == (
        "2 of 2 notifiers failed: SlackNotifier: Slack refused the message to #deploys: "
        f"not_in_channel; WebhookNotifier: webhook {fake_slack.url}/webhook answered 500: "
        "recorded"
    )

    fake_slack.webhook_status = 200
    with pytest.raises(ZdpError, match=r"^1 of 2 notifiers failed: SlackNotifier: "):
        await notifier.send(_promoted())
    assert len(fake_slack.of("webhook")) == 3  # the webhook got every notification
