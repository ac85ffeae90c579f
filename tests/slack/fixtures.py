"""A fake Slack on loopback, the bot as a real `zdp slack serve` process, and the SlackWorld.

The bot process connects to the session's Temporal dev server; the workflows it acts on run
in this process's kit worker, on the in-memory platform. Requests are built and signed by
tests.slack.slack_kit exactly as Slack builds them (v0 HMAC-SHA256 over
`v0:{timestamp}:{raw body}`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from temporalio.testing import WorkflowEnvironment

from tests.kit import KEYS, Harness
from tests.slack.fake_slack import FakeSlack, FakeSlackServer
from tests.slack.slack_kit import (
    BOT_TOKEN,
    IDENTITIES,
    SIGNING_SECRET,
    BotProcess,
    SlackWorld,
)


@pytest.fixture(scope="session")
def fake_slack_server() -> Iterator[FakeSlack]:
    server = FakeSlackServer()
    fake = server.start()
    yield fake
    server.stop()


@pytest.fixture
def fake_slack(fake_slack_server: FakeSlack) -> FakeSlack:
    """The session's fake Slack with nothing recorded yet."""
    fake_slack_server.reset()
    return fake_slack_server


@pytest.fixture(scope="session")
def bot_process(
    temporal_env: WorkflowEnvironment,
    fake_slack_server: FakeSlack,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[BotProcess]:
    """`zdp slack serve --port 0` for the session, stopped by its pid."""
    home = tmp_path_factory.mktemp("slack-bot")
    identities = home / "slack.yaml"
    identities.write_text(yaml.safe_dump(IDENTITIES))
    bot_key = home / "slack-bot.key"
    bot_key.write_bytes(
        KEYS["slack-bot"].private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    bot_key.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "ZDP_"))}
    env.update(
        TEMPORAL_ADDRESS=temporal_env.client.service_client.config.target_host,
        ZDP_SLACK_SIGNING_SECRET=SIGNING_SECRET,
        ZDP_SLACK_BOT_TOKEN=BOT_TOKEN,
        ZDP_SLACK_API_URL=fake_slack_server.api_url,
        ZDP_HOME=str(home / ".zdp"),
        ZDP_SLACK_BOT_KEY=str(bot_key),
    )
    log = home / "bot.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "zdp"), "slack", "serve", "--port", "0",
             "--identities", str(identities)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        url = _wait_until_listening(proc, log)
        yield BotProcess(url=url, pid=proc.pid, log=log)
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def _wait_until_listening(proc: subprocess.Popen[bytes], log: Path) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            if "listening on " in line:
                return line.split("listening on ", 1)[1].split()[0]
        if proc.poll() is not None:
            pytest.fail(f"zdp slack serve exited with {proc.returncode}:\n{log.read_text()}")
        time.sleep(0.1)
    pytest.fail(f"zdp slack serve did not start within 60 s:\n{log.read_text()}")


@pytest.fixture
def slack(bot_process: BotProcess, fake_slack: FakeSlack, kit: Harness) -> SlackWorld:
    """The bot (attesting as slack-bot) and the fake Slack; the bot and the people it maps
    are registered in the registry the kit's worker reads."""
    for who in KEYS:
        kit.ensure_registered(who)
    return SlackWorld(bot=bot_process, api=fake_slack)
