"""`zdp slack`: run the Slack bot that turns Approve/Reject clicks and `/zdp` into decisions."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Annotated

import typer

from zdp.cli.output import console, fail
from zdp.errors import ZdpError

app = typer.Typer(
    help="Slack approvals: the bot behind the Approve/Reject buttons and /zdp.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def slack() -> None:
    """Slack approvals: the bot behind the Approve/Reject buttons and /zdp."""


@app.command("serve")
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (0 picks a free one).")] = 3000,
    identities: Annotated[
        Path | None,
        typer.Option(
            "--identities",
            metavar="FILE",
            help="slack.yaml: Slack users to approvers, and channels "
            "(default $ZDP_SLACK_CONFIG, else infrastructure/canary-deployments/slack.yaml).",
        ),
    ] = None,
) -> None:
    """Run the bot: serve Slack's Request URL, /slack/events, over HTTP.

    Needs ZDP_SLACK_SIGNING_SECRET and ZDP_SLACK_BOT_TOKEN; ZDP_SLACK_API_URL overrides the
    Slack Web API URL; Temporal is reached through TEMPORAL_ADDRESS. With ZDP_SLACK_BOT_KEY
    (the bot's registered private key; identity ZDP_SLACK_BOT_IDENTITY, default slack-bot),
    every decision is signed by the bot on behalf of the mapped user.
    """
    from zdp.slack.bot import Attestor, BotSettings, build_bolt_app
    from zdp.slack.config import load_slack_config
    from zdp.slack.server import http_app
    from zdp.slack.server import serve as serve_http
    from zdp.temporal import connect

    try:
        settings = BotSettings.from_env()
        config = load_slack_config(identities)
        attestor = Attestor.from_env()
    except ZdpError as err:
        fail(str(err))
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    def ready(url: str) -> None:
        attests = (
            f"attesting as {attestor.identity}"
            if attestor
            else "not attesting (no ZDP_SLACK_BOT_KEY): requests are unsigned"
        )
        console.print(
            f"zdp Slack bot listening on {url} ({len(config.identities)} Slack identities, "
            f"Web API {settings.api_url}, {attests})",
            markup=False,
        )

    async def work() -> None:
        client = await connect()
        bolt = build_bolt_app(settings, config, client, attestor)
        await serve_http(http_app(bolt), host, port, on_ready=ready)

    try:
        asyncio.run(work())
    except ZdpError as err:
        fail(str(err))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":  # python -m zdp.cli.slack_cmd, until `zdp slack` is wired in
    app()
