"""The receiver's HTTP endpoint: Alertmanager posts its webhook notifications to `/alerts`.

Answers, as Alertmanager reads them (it sends again after a 5xx, never after a 4xx):
- 200 with what was done for each alert (including nothing: unmatched, refused, duplicate,
  no deployment running);
- 401 without the bearer token (logged with the caller's address; the token is never logged);
- 400 for a body that is not a version 4 notification, 413 for one over `MAX_BODY`;
- 503 when Temporal cannot be reached: the alerts not yet acted on are sent again.
`/healthz` answers without touching Temporal.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from zdp import httpserve
from zdp.alerts.auth import bearer_matches
from zdp.alerts.policy import parse_payload
from zdp.alerts.receiver import AlertReceiver, TemporalUnreachable
from zdp.errors import ZdpError

WEBHOOK_PATH = "/alerts"
MAX_BODY = 4 * 1024 * 1024

log = logging.getLogger("zdp.alerts")


def http_app(receiver: AlertReceiver, token: str) -> FastAPI:
    """The ASGI app around `receiver`, accepting only requests that carry `token`."""
    api = FastAPI(title="zdp alert receiver", docs_url=None, redoc_url=None, openapi_url=None)

    @api.post(WEBHOOK_PATH)
    async def alerts(request: Request) -> JSONResponse:
        caller = request.client.host if request.client else "?"
        if not bearer_matches(request.headers.get("authorization"), token):
            log.warning("refused a notification from %s: missing or wrong bearer token", caller)
            return JSONResponse(
                {"error": "missing or wrong bearer token"},
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer realm="zdp alert receiver"'},
            )
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_BODY:
            return JSONResponse({"error": f"body over {MAX_BODY} bytes"}, status_code=413)
        body = await request.body()
        if len(body) > MAX_BODY:
            return JSONResponse({"error": f"body over {MAX_BODY} bytes"}, status_code=413)
        try:
            payload = parse_payload(body)
        except ZdpError as err:
            log.warning("refused a notification from %s: %s", caller, err)
            return JSONResponse({"error": str(err)}, status_code=400)
        try:
            outcomes = await receiver.receive(payload)
        except TemporalUnreachable as err:
            log.error("Temporal unreachable, Alertmanager is asked to send again: %s", err)
            return JSONResponse({"error": str(err)}, status_code=503)
        return JSONResponse({"alerts": [o.model_dump(mode="json") for o in outcomes]})

    @api.get("/healthz")
    async def healthz() -> dict[str, bool]:
        return {"ok": True}

    return api


async def serve(
    app: FastAPI, host: str, port: int, on_ready: Callable[[str], None] | None = None
) -> None:
    """Serve until SIGINT or SIGTERM; `on_ready` gets the URL once the socket is bound."""
    await httpserve.serve(app, host, port, WEBHOOK_PATH, on_ready, log_level="warning")
