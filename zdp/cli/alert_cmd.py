"""`zdp alert-receiver`: Alertmanager's webhook, turning firing alerts into pause or abort."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Annotated

import typer

from zdp.cli.output import console, err_console, fail
from zdp.errors import ZdpError


def alert_receiver(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[
        int | None,
        typer.Option(
            help="Port to listen on [default: $ZDP_ALERT_RECEIVER_PORT, else the stack's "
            "port base + 6: 18006].",
        ),
    ] = None,
    policy: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="The alert policy [default: $ZDP_ALERT_POLICY, else "
            "infrastructure/rollback-automation/alert-policy.yaml, else the packaged one].",
        ),
    ] = None,
) -> None:
    """Receive Alertmanager's webhook: firing alerts pause or abort the running deployment.

    Alertmanager posts to http://HOST:PORT/alerts with the bearer token from
    $ZDP_ALERT_RECEIVER_TOKEN_FILE (default $ZDP_HOME/alert-receiver.token, made 0600 on first
    start). The alert policy maps each alert name to pause or abort; the alert's app and
    environment labels name the deployment. Controls are signed as the registered identity
    $ZDP_ALERT_RECEIVER_IDENTITY (default alert-receiver) with its key (default
    $ZDP_HOME/keys/alert-receiver.key, made on first start); the receiver does not start until
    an administrator has registered that key, and each environment must list the identity
    among its operators. The same alert acts once, also across restarts.
    """
    from zdp.alerts.auth import ensure_token, operated_environments, receiver_identity, token_path
    from zdp.alerts.policy import load_alert_policy
    from zdp.alerts.receiver import AlertReceiver
    from zdp.alerts.seen import SeenAlerts, seen_path
    from zdp.alerts.server import http_app, serve
    from zdp.platforms.layout import alert_receiver_port
    from zdp.settings import settings
    from zdp.temporal import connect

    try:
        found = settings()
        loaded, policy_path = load_alert_policy(policy)
        token_file = token_path(found)
        token, token_made = ensure_token(token_file)
        identity, key_made = receiver_identity(found)
        seen = SeenAlerts(seen_path(found.home))
        listen_port = port or found.ALERT_RECEIVER_PORT or alert_receiver_port()
    except ZdpError as err:
        fail(str(err))
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if key_made:
        err_console.print(f"made the receiver's key {identity.key_path}", markup=False)
    operated = operated_environments(identity.user)
    if operated == []:
        err_console.print(
            f"warning: no environment of the engine configuration found here lists "
            f"{identity.user} among its operators: deployments will refuse its controls",
            markup=False,
        )

    def ready(url: str) -> None:
        rules = "; ".join(rule.describe() for rule in loaded.rules)
        console.print(
            f"zdp alert receiver listening on {url} as {identity.user} (key "
            f"{identity.fingerprint}); policy {policy_path}: {rules}; bearer token in "
            f"{token_file}{' (made now)' if token_made else ''}; alerts acted on before: "
            f"{len(seen)}" + (f"; operator of {', '.join(operated)}" if operated else ""),
            markup=False,
            highlight=False,
        )

    async def work() -> None:
        client = await connect()
        receiver = AlertReceiver(client, loaded, seen, identity, found.home)
        await serve(http_app(receiver, token), host, listen_port, on_ready=ready)

    try:
        asyncio.run(work())
    except ZdpError as err:
        fail(str(err))
    except KeyboardInterrupt:
        pass
