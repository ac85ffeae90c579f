"""finance-trading API keys: /api (but quotes) and /graphql need one; operations stay open;
drills (/drill/*) need a drill key, which cannot trade."""

from __future__ import annotations

from collections.abc import MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from finance_kit import (
    ALICE_KEY,
    DEMO_KEY,
    DRILL_KEY,
    TWO_ACCOUNTS,
    digest,
    drill_key,
    key,
    order,
)
from finance_trading.main import create_app
from finance_trading.middleware.auth import ApiKeys
from finance_trading.settings import Settings

if TYPE_CHECKING:
    from ops_kit.testing import InProcess

PROTECTED = [
    ("POST", "/api/orders"),
    ("GET", "/api/orders"),
    ("GET", "/api/orders/ord-1"),
    ("DELETE", "/api/orders/ord-1"),
    ("GET", "/api/positions"),
    ("GET", "/api/trades"),
    ("POST", "/graphql"),
    ("GET", "/graphql"),
    ("GET", "/api/not-a-route"),
]


@pytest.mark.parametrize(("method", "path"), PROTECTED)
async def test_no_key_is_401_with_a_challenge(
    in_process: InProcess, method: str, path: str
) -> None:
    async with in_process() as client:
        answer = await client.request(method, path, json=order() if method == "POST" else None)
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "UNAUTHENTICATED"
    assert "X-API-Key" in answer.json()["error"]["message"]
    assert answer.headers["WWW-Authenticate"].startswith("APIKey ")


async def test_an_unknown_key_is_401(in_process: InProcess) -> None:
    async with in_process() as client:
        wrong = await client.get("/api/orders", headers=key("not-a-key"))
        empty = await client.get("/api/orders", headers=key(""))
        hashed = await client.get("/api/orders", headers=key(digest(DEMO_KEY)))
    for answer in (wrong, empty, hashed):
        assert answer.status_code == 401
        assert answer.json()["error"]["code"] == "UNAUTHENTICATED"
        assert "WWW-Authenticate" in answer.headers


async def test_a_known_key_is_served_as_its_account(in_process: InProcess) -> None:
    async with in_process() as client:
        submit = await client.post("/api/orders", json=order(), headers=key())
        listed = await client.get("/api/orders", headers=key())
    assert submit.status_code == 201
    assert submit.json()["account"] == "demo"
    assert listed.status_code == 200


async def test_keys_from_app_api_keys_replace_the_demo_key(in_process: InProcess) -> None:
    async with in_process(TWO_ACCOUNTS) as client:
        alice = await client.get("/api/orders", headers=key(ALICE_KEY))
        demo = await client.get("/api/orders", headers=key(DEMO_KEY))
    assert (alice.status_code, demo.status_code) == (200, 401)


async def test_quotes_health_metrics_and_version_need_no_key(in_process: InProcess) -> None:
    async with in_process() as client:
        paths = ["/api/quote/AAPL", "/healthz/live", "/healthz/ready", "/metrics", "/version"]
        statuses = [(await client.get(path)).status_code for path in paths]
        quote_with_bad_key = await client.get("/api/quote/AAPL", headers=key("wrong"))
    assert statuses == [200] * 5
    assert quote_with_bad_key.status_code == 200  # public: a key is not even looked at


async def test_refusals_are_counted_in_the_metrics(in_process: InProcess) -> None:
    async with in_process() as client:
        await client.get("/api/orders")
        metrics = (await client.get("/metrics")).text
    assert 'http_requests_total{method="GET",path="<unmatched>",status="401"} 1.0' in metrics


def test_keys_are_held_and_compared_only_as_digests() -> None:
    keys = ApiKeys({digest(DEMO_KEY): "demo"})
    assert keys.account_for(DEMO_KEY.encode()) == "demo"
    assert keys.account_for(digest(DEMO_KEY).encode()) is None
    assert keys.account_for(b"") is None
    assert keys.account_for(b"x" * 10_000) is None
    assert DEMO_KEY.encode() not in repr(vars(keys)).encode()


@pytest.mark.parametrize("api_key", [None, DEMO_KEY])
async def test_graphql_over_a_websocket_is_closed(api_key: str | None) -> None:
    """Without a key the middleware closes it (1008); with one, no WebSocket route exists."""
    app = create_app(Settings.from_env({}))
    headers = [(b"sec-websocket-protocol", b"graphql-transport-ws")]
    if api_key:
        headers.append((b"x-api-key", api_key.encode()))
    scope = {"type": "websocket", "path": "/graphql", "raw_path": b"/graphql", "headers": headers,
             "query_string": b"", "root_path": "", "scheme": "ws", "subprotocols": []}  # fmt: skip
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    await app(scope, receive, send)
    assert [message["type"] for message in sent] == ["websocket.close"]
    assert sent[0]["code"] == (1008 if api_key is None else 1000)


DRILL = {"APP_DRILL_ENDPOINT": "1"}
BREAK_IT = {"error_rate": 1.0, "latency_ms": 0, "ready_fail": True}


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 401, "UNAUTHENTICATED"),  # no credential
        (key("not-a-key"), 401, "UNAUTHENTICATED"),  # a wrong one
        (key(digest(DRILL_KEY)), 401, "UNAUTHENTICATED"),  # the digest is not the key
        (key(DEMO_KEY), 403, "FORBIDDEN"),  # a valid trading key: not privileged for drills
    ],
    ids=["no-key", "unknown-key", "digest-of-drill-key", "trading-key"],
)
async def test_a_drill_without_a_drill_key_is_refused_and_changes_nothing(
    in_process: InProcess, headers: dict[str, str], status: int, code: str
) -> None:
    app = create_app(Settings.from_env(DRILL))
    faults = app.state.faults
    async with in_process(app=app) as client:
        refused = await client.post("/drill/faults", json=BREAK_IT, headers=headers)
        quote = await client.get("/api/quote/AAPL")
        ready = await client.get("/healthz/ready")
    assert refused.status_code == status
    assert refused.json()["error"]["code"] == code
    assert "drill key" in refused.json()["error"]["message"]
    assert ("WWW-Authenticate" in refused.headers) is (status == 401)
    assert app.state.faults is faults  # nothing was set
    assert (quote.status_code, ready.status_code) == (200, 200)


async def test_a_drill_key_runs_the_drill_and_cannot_trade(in_process: InProcess) -> None:
    async with in_process(DRILL) as client:
        drill = await client.post("/drill/faults", json={"error_rate": 1.0}, headers=drill_key())
        broken = await client.get("/api/quote/AAPL")
        trade = await client.post("/api/orders", json=order(), headers=key(DRILL_KEY))
    assert drill.status_code == 200
    assert drill.json() == {"error_rate": 1.0, "latency_ms": 0, "ready_fail": False}
    assert broken.status_code == 503
    assert trade.status_code == 401  # a drill key is not an API key


async def test_the_drill_endpoint_off_is_404_even_with_a_drill_key(in_process: InProcess) -> None:
    async with in_process() as client:
        answer = await client.post("/drill/faults", json=BREAK_IT, headers=drill_key())
    assert answer.status_code == 404


async def test_drill_keys_from_app_drill_keys_file_replace_the_demo_one(
    in_process: InProcess, tmp_path: Path
) -> None:
    drill_keys = tmp_path / "DRILL_KEYS_FILE"
    drill_keys.write_text(f"{digest('own-drill-key')}: sre-oncall\n")
    env = {**DRILL, "APP_DRILL_KEYS_FILE": str(drill_keys)}
    async with in_process(env) as client:
        demo = await client.post("/drill/faults", json={}, headers=drill_key())
        own = await client.post("/drill/faults", json={}, headers=drill_key("own-drill-key"))
    assert (demo.status_code, own.status_code) == (401, 200)


async def test_staging_ships_no_drill_key(in_process: InProcess) -> None:
    env = {**DRILL, **TWO_ACCOUNTS, "APP_ENV": "staging"}
    async with in_process(env) as client:
        demo = await client.post("/drill/faults", json=BREAK_IT, headers=drill_key())
        alice = await client.post("/drill/faults", json=BREAK_IT, headers=key(ALICE_KEY))
    assert (demo.status_code, alice.status_code) == (401, 403)
