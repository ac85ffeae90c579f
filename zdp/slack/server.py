"""Serve the Bolt app over HTTP: FastAPI routes and a uvicorn server on a socket we bind.

Slack sends slash commands and interactivity (button clicks) to one Request URL,
`http(s)://<host>/slack/events`. `/healthz` answers without touching Slack or Temporal.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable

import uvicorn
from fastapi import FastAPI, Request, Response
from slack_bolt.adapter.fastapi.async_handler import AsyncSlackRequestHandler
from slack_bolt.async_app import AsyncApp

from zdp.errors import ZdpError

EVENTS_PATH = "/slack/events"

log = logging.getLogger(__name__)


def http_app(bolt: AsyncApp) -> FastAPI:
    """The ASGI app: Slack's requests go to Bolt with their raw body, so signatures verify."""
    api = FastAPI(title="zdp Slack bot", docs_url=None, redoc_url=None, openapi_url=None)
    handler = AsyncSlackRequestHandler(bolt)

    @api.post(EVENTS_PATH)
    async def slack_events(request: Request) -> Response:
        response = await handler.handle(request)
        if response.status_code == 401:
            # Bolt logs the whole body of such a request; one line without it is enough.
            log.warning(
                "refused a request from %s: bad signature or timestamp outside 5 minutes",
                request.client.host if request.client else "?",
            )
        return response

    @api.get("/healthz")
    async def healthz() -> dict[str, bool]:
        return {"ok": True}

    return api


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket; port 0 picks a free one. ZdpError in one line if it cannot bind."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        # Listening now queues early connections until uvicorn accepts them.
        sock.listen(2048)
    except OSError as err:
        sock.close()
        raise ZdpError(f"cannot listen on {host}:{port}: {err.strerror}") from None
    return sock


async def serve(
    app: FastAPI,
    host: str = "127.0.0.1",
    port: int = 3000,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until SIGINT or SIGTERM; `on_ready` gets the events URL once the socket is bound."""
    sock = listen(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    config = uvicorn.Config(app, log_level="info", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    if on_ready is not None:
        on_ready(f"http://{shown}:{bound_port}{EVENTS_PATH}")
    await server.serve(sockets=[sock])
