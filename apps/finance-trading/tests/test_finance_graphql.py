"""finance-trading GraphQL at /graphql: the same orders, positions and errors as REST."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
from finance_kit import ALICE_KEY, BOB_KEY, TWO_ACCOUNTS, key, order

if TYPE_CHECKING:
    from ops_kit.testing import InProcess

ALICE, BOB = key(ALICE_KEY), key(BOB_KEY)

SUBMIT = """
mutation Submit($order: OrderInput!) {
  submitOrder(order: $order) {
    replayed
    order { orderId clientOrderId account symbol side qty limitPrice status filledQty leavesQty }
  }
}
"""
CANCEL = "mutation ($id: ID!) { cancelOrder(orderId: $id) { replayed order { status } } }"
ORDERS = "{ orders { orderId clientOrderId side status } }"


async def graphql(
    client: httpx.AsyncClient, query: str, headers: dict[str, str], **variables: Any
) -> dict[str, Any]:
    answer = await client.post(
        "/graphql", json={"query": query, "variables": variables}, headers=headers
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def graphql_order(client_order_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "clientOrderId": client_order_id,
        "symbol": "AAPL",
        "side": "SELL",
        "qty": 10,
        "limitPrice": "190.00",
        **fields,
    }


async def test_an_order_submitted_by_rest_is_visible_by_graphql(in_process: InProcess) -> None:
    async with in_process(TWO_ACCOUNTS) as client:
        rest = await client.post("/api/orders", json=order("r-1"), headers=ALICE)
        mine = await graphql(client, ORDERS, ALICE)
        theirs = await graphql(client, ORDERS, BOB)
        one = await graphql(
            client, "query ($id: ID!) { order(orderId: $id) { qty limitPrice status } }", ALICE,
            id=rest.json()["order_id"],
        )  # fmt: skip
    assert mine == {
        "data": {
            "orders": [
                {
                    "orderId": rest.json()["order_id"],
                    "clientOrderId": "r-1",
                    "side": "BUY",
                    "status": "NEW",
                }
            ]
        }
    }
    assert theirs == {"data": {"orders": []}}
    assert one == {"data": {"order": {"qty": 10, "limitPrice": "190.50", "status": "NEW"}}}


async def test_an_order_submitted_by_graphql_is_visible_by_rest_and_trades(
    in_process: InProcess,
) -> None:
    async with in_process(TWO_ACCOUNTS) as client:
        await client.post("/api/orders", json=order("r-1", qty=4), headers=ALICE)
        submitted = await graphql(client, SUBMIT, BOB, order=graphql_order("g-1"))
        by_rest = await client.get("/api/orders", headers=BOB)
        positions = await graphql(client, "{ positions { symbol qty netCash } }", BOB)
        trades = await graphql(client, "{ trades { side qty price } }", BOB)
    result = submitted["data"]["submitOrder"]
    assert result["replayed"] is False
    assert result["order"]["account"] == "bob"
    assert (result["order"]["status"], result["order"]["filledQty"]) == ("PARTIALLY_FILLED", 4)
    [rest_order] = by_rest.json()
    assert rest_order["order_id"] == result["order"]["orderId"]
    assert (rest_order["status"], rest_order["leaves_qty"]) == ("partially_filled", 6)
    assert positions["data"]["positions"] == [{"symbol": "AAPL", "qty": -4, "netCash": "762.00"}]
    assert trades["data"]["trades"] == [{"side": "SELL", "qty": 4, "price": "190.50"}]


async def test_graphql_submit_is_idempotent_with_rest(in_process: InProcess) -> None:
    async with in_process() as client:
        rest = await client.post(
            "/api/orders", json=order("x-1", side="sell", limit_price="190.00"), headers=key()
        )
        replay = await graphql(client, SUBMIT, key(), order=graphql_order("x-1"))
        conflict = await graphql(client, SUBMIT, key(), order=graphql_order("x-1", qty=11))
    assert replay["data"]["submitOrder"]["replayed"] is True
    assert replay["data"]["submitOrder"]["order"]["orderId"] == rest.json()["order_id"]
    [error] = conflict["errors"]
    assert error["extensions"] == {"code": "IDEMPOTENCY_CONFLICT"}


async def test_graphql_errors_carry_the_rest_error_codes(in_process: InProcess) -> None:
    async with in_process() as client:
        band = await graphql(
            client, SUBMIT, key(), order=graphql_order("b-1", limitPrice="250.00", side="BUY")
        )
        invalid = await graphql(client, SUBMIT, key(), order=graphql_order("b-2", qty=0))
        missing = await graphql(
            client, "query ($id: ID!) { order(orderId: $id) { status } }", key(), id="nope"
        )
    assert band["errors"][0]["extensions"] == {"code": "PRICE_BAND"}
    assert band["errors"][0]["message"] == (
        "limit 250.00 is more than 5% from the reference price 190.00 of AAPL"
    )
    assert invalid["errors"][0]["extensions"] == {"code": "INVALID_REQUEST"}
    assert "qty" in invalid["errors"][0]["message"]
    assert missing["errors"][0]["extensions"] == {"code": "ORDER_NOT_FOUND"}


async def test_graphql_cancel_is_idempotent(in_process: InProcess) -> None:
    async with in_process() as client:
        submitted = await graphql(client, SUBMIT, key(), order=graphql_order("c-1"))
        order_id = submitted["data"]["submitOrder"]["order"]["orderId"]
        first = await graphql(client, CANCEL, key(), id=order_id)
        again = await graphql(client, CANCEL, key(), id=order_id)
        rest = await client.get(f"/api/orders/{order_id}", headers=key())
    assert first["data"]["cancelOrder"] == {"replayed": False, "order": {"status": "CANCELLED"}}
    assert again["data"]["cancelOrder"] == {"replayed": True, "order": {"status": "CANCELLED"}}
    assert rest.json()["status"] == "cancelled"


async def test_graphql_quote_and_book(in_process: InProcess) -> None:
    async with in_process() as client:
        await client.post("/api/orders", json=order("r-1"), headers=key())
        answer = await graphql(
            client,
            '{ quote(symbol: "aapl") { symbol bid ask } '
            'book(symbol: "AAPL") { bids { price qty } asks { price qty } } }',
            key(),
        )
    assert answer["data"] == {
        "quote": {"symbol": "AAPL", "bid": "189.98", "ask": "190.02"},
        "book": {"bids": [{"price": "190.50", "qty": 10}], "asks": []},
    }


async def test_graphql_is_labelled_by_its_route_in_the_metrics(in_process: InProcess) -> None:
    async with in_process() as client:
        await graphql(client, ORDERS, key())
        metrics = (await client.get("/metrics")).text
    assert 'http_requests_total{method="POST",path="/graphql",status="200"} 1.0' in metrics
