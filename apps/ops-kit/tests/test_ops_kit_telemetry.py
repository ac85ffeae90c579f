"""The request log line and metrics of TelemetryMiddleware; the request id of the JSON logs."""

from __future__ import annotations

import logging

import httpx
from fastapi import FastAPI, Request
from ops_kit.logs import current_request_id
from ops_kit.telemetry import RequestMetrics, TelemetryMiddleware
from ops_kit.testing import json_log_lines
from prometheus_client import CollectorRegistry, generate_latest
from starlette.types import ASGIApp, Receive, Scope, Send


class SetAccount:
    """Stands in for an app's own inner middleware that puts a value in the request state."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/api/"):
            scope.setdefault("state", {})["account"] = "alice"
        await self.app(scope, receive, send)


async def test_request_lines_carry_the_state_fields_and_skip_health_probes() -> None:
    app_logger = logging.getLogger("my_app.telemetry")
    registry = CollectorRegistry()
    app = FastAPI()

    @app.get("/api/things/{thing}")
    async def thing(thing: str, request: Request) -> dict[str, str]:
        return {"thing": thing}

    @app.get("/healthz/live")
    async def live() -> dict[str, str]:
        return {"status": "live"}

    app.add_middleware(SetAccount)
    metrics = RequestMetrics(registry)
    app.add_middleware(
        TelemetryMiddleware, metrics=metrics, state_fields=("account",), logger=app_logger
    )
    transport = httpx.ASGITransport(app=app)
    token = current_request_id.set("req-1")
    try:
        with json_log_lines("my_app.telemetry") as lines:
            async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
                await client.get("/api/things/x")
                await client.get("/healthz/live")
                await client.get("/nowhere")
    finally:
        current_request_id.reset(token)
    assert [line["path"] for line in lines] == ["/api/things/x", "/nowhere"]
    first = lines[0]
    assert {k: first[k] for k in ("logger", "msg", "method", "route", "status", "account")} == {
        "logger": "my_app.telemetry",
        "msg": "request",
        "method": "GET",
        "route": "/api/things/{thing}",
        "status": 200,
        "account": "alice",
    }
    assert first["request_id"] == "req-1"
    assert {"ts", "level", "duration_ms"} <= first.keys()
    assert "account" not in lines[1]
    text = generate_latest(registry).decode()
    assert 'http_requests_total{method="GET",path="/healthz/live",status="200"} 1.0' in text
    assert 'http_requests_total{method="GET",path="<unmatched>",status="404"} 1.0' in text
