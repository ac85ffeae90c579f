"""finance-trading pre-trade risk limits: each rejects with its own code, HTTP 422."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from finance_kit import key, order

if TYPE_CHECKING:
    from ops_kit.testing import InProcess


# The local limits: max qty 10000, max notional 1,000,000, band 5% of the mid, GME restricted.
@pytest.mark.parametrize(
    ("fields", "code", "message"),
    [
        (
            {"limit_price": "250.00"},
            "PRICE_BAND",
            "limit 250.00 is more than 5% from the reference price 190.00 of AAPL",
        ),
        (
            {"side": "sell", "limit_price": "180.40"},
            "PRICE_BAND",
            "limit 180.40 is more than 5% from the reference price 190.00 of AAPL",
        ),
        (
            {"qty": 10001, "limit_price": "1.00", "symbol": "GOOG"},
            "MAX_QTY",
            "qty 10001 is more than the maximum of 10000 per order",
        ),
        (
            {"qty": 6000, "limit_price": "190.00"},
            "MAX_NOTIONAL",
            "notional 1,140,000.00 (qty 6000 x limit 190.00) is more than the maximum of "
            "1,000,000.00 per order",
        ),
        (
            {"symbol": "GME", "limit_price": "25.00"},
            "RESTRICTED_SYMBOL",
            "GME is on the restricted list: orders in it are refused",
        ),
        (
            {"symbol": "NOPE"},
            "UNKNOWN_SYMBOL",
            "unknown symbol 'NOPE': quoted symbols are AAPL, AMZN, GME, GOOG, MSFT, NVDA",
        ),
    ],
)
async def test_each_limit_rejects_with_its_code(
    in_process: InProcess, fields: dict[str, Any], code: str, message: str
) -> None:
    async with in_process() as client:
        answer = await client.post("/api/orders", json=order(**fields), headers=key())
        listed = await client.get("/api/orders", headers=key())
    assert answer.status_code == 422
    assert answer.json() == {"error": {"code": code, "message": message}}
    assert listed.json() == []  # a refused order is not kept


async def test_orders_on_the_limits_are_accepted(in_process: InProcess) -> None:
    at_the_limits = [
        order("band-up", limit_price="199.50"),  # +5.00%
        order("band-down", side="sell", limit_price="180.50"),  # -5.00%
        order("notional", symbol="NVDA", qty=8000, limit_price="125.00"),  # 1,000,000
    ]
    async with in_process() as client:
        answers = [await client.post("/api/orders", json=o, headers=key()) for o in at_the_limits]
    assert [a.status_code for a in answers] == [201, 201, 201]


async def test_limits_follow_app_overrides(in_process: InProcess) -> None:
    env = {"APP_MAX_ORDER_QTY": "5", "APP_RESTRICTED_SYMBOLS": "msft, nvda"}
    async with in_process(env) as client:
        qty = await client.post("/api/orders", json=order(qty=6), headers=key())
        at_max = await client.post("/api/orders", json=order("c-2", qty=5), headers=key())
        gme = await client.post(
            "/api/orders", json=order("c-3", symbol="GME", qty=1, limit_price="25"), headers=key()
        )
        msft = await client.post(
            "/api/orders", json=order("c-4", symbol="MSFT", qty=1, limit_price="410"), headers=key()
        )
    assert qty.json()["error"]["code"] == "MAX_QTY"
    assert at_max.status_code == 201
    assert gme.status_code == 201  # the override replaced the file's list
    assert msft.json()["error"]["code"] == "RESTRICTED_SYMBOL"
