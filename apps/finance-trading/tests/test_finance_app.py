"""finance-trading: the operations contract (ops_kit.testing: health, version, metrics, drill
faults, the SIGTERM drain), quotes, and what the drill faults do to orders and GraphQL."""

from __future__ import annotations

from typing import TYPE_CHECKING

from finance_kit import drill_key, key, order
from ops_kit.testing import OpsContract

if TYPE_CHECKING:
    from ops_kit.testing import InProcess


class TestOperations(OpsContract):
    APP = "finance-trading"
    API_PATH = "/api/quote/AAPL"
    API_ROUTE = "/api/quote/{symbol}"

    def drill_headers(self) -> dict[str, str]:
        return drill_key()


async def test_quote_is_deterministic_and_unknown_symbol_is_404(in_process: InProcess) -> None:
    async with in_process() as client:
        first = await client.get("/api/quote/aapl")
        second = await client.get("/api/quote/AAPL")
        unknown = await client.get("/api/quote/NOPE")
    assert first.json() == second.json()
    assert first.json() == {"symbol": "AAPL", "bid": "189.98", "ask": "190.02", "currency": "USD"}
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "UNKNOWN_SYMBOL"
    assert "NOPE" in unknown.json()["error"]["message"]


async def test_error_rate_one_fails_orders_and_graphql_too(in_process: InProcess) -> None:
    async with in_process({"APP_FAULT_ERROR_RATE": "1.0"}) as client:
        submit = await client.post("/api/orders", json=order(), headers=key())
        graphql = await client.post(
            "/graphql", json={"query": "{ orders { orderId } }"}, headers=key()
        )
    assert (submit.status_code, graphql.status_code) == (503, 503)


async def test_orders_are_taken_while_the_ready_fail_drill_fails_readiness(
    in_process: InProcess,
) -> None:
    async with in_process({"APP_DRILL_ENDPOINT": "1"}) as client:
        await client.post("/drill/faults", json={"ready_fail": True}, headers=drill_key())
        failing = await client.get("/healthz/ready")
        submitted = await client.post("/api/orders", json=order(), headers=key())
    assert failing.status_code == 503
    assert submitted.status_code == 201  # the API keeps answering
