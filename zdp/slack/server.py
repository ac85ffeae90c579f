"""Serve the Bolt app over HTTP: FastAPI routes and a uvicorn server on a socket we bind.

Slack sends slash commands and interactivity (button clicks) to one Request URL,
`http(s)://<host>/slack/events`. `/healthz` answers without touching Slack or Temporal.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi import FastAPI, Request, Response
from slack_bolt.adapter.fastapi.async_handler import AsyncSlackRequestHandler
from slack_bolt.async_app import AsyncApp

from zdp import httpserve

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


async def serve(
    app: FastAPI,
    host: str = "127.0.0.1",
    port: int = 3000,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until SIGINT or SIGTERM; `on_ready` gets the URL once the socket is bound."""
    await httpserve.serve(app, host, port, EVENTS_PATH, on_ready, log_level="info")
