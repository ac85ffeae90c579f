"""finance-trading request ids: kept when sane, made otherwise, echoed, in every log line."""

from __future__ import annotations

import io
import json
import logging
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from finance_kit import key, order
from ops_kit.logs import JsonFormatter

if TYPE_CHECKING:
    from ops_kit.testing import AppProcess, InProcess

StartApp = Callable[[dict[str, str]], "AppProcess"]


async def test_a_sane_incoming_request_id_is_echoed(in_process: InProcess) -> None:
    incoming = "3f1c2a9e-5b7d-4e21-9c1a-0d2f6b8e4a10"
    async with in_process() as client:
        answer = await client.get("/api/quote/AAPL", headers={"X-Request-ID": incoming})
    assert answer.headers["X-Request-ID"] == incoming


@pytest.mark.parametrize("incoming", ["", "has space", "x" * 200, "semi;colon", '"quoted"'])
async def test_an_insane_request_id_is_replaced(in_process: InProcess, incoming: str) -> None:
    async with in_process() as client:
        answer = await client.get("/api/quote/AAPL", headers={"X-Request-ID": incoming})
    assert answer.headers["X-Request-ID"] != incoming
    uuid.UUID(answer.headers["X-Request-ID"])


async def test_each_request_without_one_gets_its_own(in_process: InProcess) -> None:
    async with in_process() as client:
        ids = {(await client.get("/healthz/live")).headers["X-Request-ID"] for _ in range(3)}
        refused = await client.get("/api/orders")
    assert len(ids) == 3
    assert "X-Request-ID" in refused.headers  # refusals too


async def test_every_log_line_of_a_request_carries_its_id(in_process: InProcess) -> None:
    lines = await _logged_while(in_process)
    graphql_lines = [line for line in lines if line.get("request_id") == "req-graphql-1"]
    assert {line["msg"] for line in graphql_lines} == {"graphql refused", "request"}
    order_lines = [line for line in lines if line.get("request_id") == "req-order-1"]
    assert [(line["msg"], line["account"]) for line in order_lines] == [("request", "demo")]


async def _logged_while(in_process: InProcess) -> list[dict[str, Any]]:
    """The JSON lines logged, formatted as they are emitted, as configure_logging does."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        async with in_process() as client:
            await client.post(
                "/graphql",
                json={"query": '{ quote(symbol: "NOPE") { bid } }'},  # logs "graphql refused"
                headers={**key(), "X-Request-ID": "req-graphql-1"},
            )
            await client.post(
                "/api/orders", json=order(), headers={**key(), "X-Request-ID": "req-order-1"}
            )
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_real_process_logs_the_request_id(app_process: StartApp) -> None:
    app = app_process({})
    app.wait_ready()
    answer = httpx.get(f"{app.base_url}/api/quote/AAPL", headers={"X-Request-ID": "req-real-1"})
    assert answer.headers["X-Request-ID"] == "req-real-1"
    deadline = time.monotonic() + 5  # the request line is written just after the answer
    while '"req-real-1"' not in app.log() and time.monotonic() < deadline:
        time.sleep(0.02)
    lines = [json.loads(line) for line in app.log().splitlines() if line.startswith("{")]
    [request] = [line for line in lines if line.get("request_id") == "req-real-1"]
    assert (request["msg"], request["route"], request["status"]) == (
        "request",
        "/api/quote/{symbol}",
        200,
    )
