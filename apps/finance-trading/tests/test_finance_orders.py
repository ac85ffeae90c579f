"""finance-trading REST orders: idempotent submit and cancel, per-account state, positions."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

import httpx
from finance_kit import ALICE_KEY, BOB_KEY, TWO_ACCOUNTS, key, order

if TYPE_CHECKING:  # conftest is pytest's, so import it for the type names only
    from ops_kit.testing import AppProcess, InProcess

StartApp = Callable[[dict[str, str]], "AppProcess"]
ALICE, BOB = key(ALICE_KEY), key(BOB_KEY)


async def test_retried_submit_returns_the_original_order(in_process: InProcess) -> None:
    async with in_process() as client:
        first = await client.post("/api/orders", json=order(), headers=key())
        retry = await client.post("/api/orders", json=order(), headers=key())
        other = await client.post("/api/orders", json=order("c-2"), headers=key())
        listed = await client.get("/api/orders", headers=key())
    assert first.status_code == 201
    assert "Idempotent-Replay" not in first.headers
    assert (retry.status_code, retry.headers["Idempotent-Replay"]) == (200, "true")
    assert retry.json() == first.json()
    assert first.json()["status"] == "new"
    assert first.json()["account"] == "demo"
    assert other.status_code == 201
    assert other.json()["order_id"] != first.json()["order_id"]
    assert [o["client_order_id"] for o in listed.json()] == ["c-1", "c-2"]


async def test_retry_with_the_same_price_written_differently_is_a_replay(
    in_process: InProcess,
) -> None:
    async with in_process() as client:
        await client.post("/api/orders", json=order(limit_price="190.5"), headers=key())
        retry = await client.post(
            "/api/orders", json=order(symbol="aapl", limit_price="190.5000"), headers=key()
        )
    assert retry.status_code == 200


async def test_reused_client_order_id_for_another_order_is_409(in_process: InProcess) -> None:
    async with in_process() as client:
        await client.post("/api/orders", json=order(), headers=key())
        conflict = await client.post("/api/orders", json=order(qty=11), headers=key())
        listed = await client.get("/api/orders", headers=key())
    assert conflict.status_code == 409
    error = conflict.json()["error"]
    assert error["code"] == "IDEMPOTENCY_CONFLICT"
    assert "'c-1'" in error["message"]
    assert "qty 10, not 11" in error["message"]
    assert len(listed.json()) == 1


async def test_idempotency_is_per_account(in_process: InProcess) -> None:
    async with in_process(TWO_ACCOUNTS) as client:
        alice = await client.post("/api/orders", json=order(), headers=ALICE)
        bob = await client.post("/api/orders", json=order(qty=5), headers=BOB)
        bobs = await client.get("/api/orders", headers=BOB)
    assert (alice.status_code, bob.status_code) == (201, 201)
    assert alice.json()["order_id"] != bob.json()["order_id"]
    assert [o["account"] for o in bobs.json()] == ["bob"]


async def test_concurrent_duplicate_submits_create_one_order(in_process: InProcess) -> None:
    async with in_process() as client:
        answers = await asyncio.gather(
            *(client.post("/api/orders", json=order(), headers=key()) for _ in range(20))
        )
        listed = await client.get("/api/orders", headers=key())
    assert sorted(a.status_code for a in answers) == [200] * 19 + [201]
    assert len({a.json()["order_id"] for a in answers}) == 1
    assert len(listed.json()) == 1


async def test_concurrent_duplicate_submits_to_a_real_process_create_one_order(
    app_process: StartApp,
) -> None:
    app = app_process({})
    await asyncio.to_thread(app.wait_ready)
    limits = httpx.Limits(max_connections=20)
    async with httpx.AsyncClient(base_url=app.base_url, limits=limits, timeout=10) as client:
        answers = await asyncio.gather(
            *(client.post("/api/orders", json=order(), headers=key()) for _ in range(40))
        )
        listed = await client.get("/api/orders", headers=key())
    assert sorted(a.status_code for a in answers) == [200] * 39 + [201]
    assert len({a.json()["order_id"] for a in answers}) == 1
    assert len(listed.json()) == 1


async def test_an_order_that_crosses_trades_and_moves_positions(in_process: InProcess) -> None:
    async with in_process(TWO_ACCOUNTS) as client:
        sell = await client.post(
            "/api/orders", json=order("s-1", side="sell", qty=10, limit_price="190.00"), headers=BOB
        )
        buy = await client.post(
            "/api/orders", json=order("b-1", qty=4, limit_price="191.00"), headers=ALICE
        )
        resting = await client.get(f"/api/orders/{sell.json()['order_id']}", headers=BOB)
        alice_positions = (await client.get("/api/positions", headers=ALICE)).json()
        bob_positions = (await client.get("/api/positions", headers=BOB)).json()
        alice_trades = (await client.get("/api/trades", headers=ALICE)).json()
    assert buy.json()["status"] == "filled"
    assert buy.json()["avg_fill_price"] == "190.0000"  # the resting sell's price, not 191
    assert resting.json()["status"] == "partially_filled"
    assert (resting.json()["filled_qty"], resting.json()["leaves_qty"]) == (4, 6)
    assert alice_positions == [
        {"symbol": "AAPL", "qty": 4, "bought_qty": 4, "sold_qty": 0, "net_cash": "-760.00"}
    ]
    assert bob_positions[0]["qty"] == -4
    assert bob_positions[0]["net_cash"] == "760.00"
    assert [(t["side"], t["qty"], t["price"]) for t in alice_trades] == [("buy", 4, "190.00")]


async def test_cancel_is_idempotent_and_keeps_what_traded(in_process: InProcess) -> None:
    async with in_process(TWO_ACCOUNTS) as client:
        sell = await client.post("/api/orders", json=order("s-1", side="sell"), headers=BOB)
        await client.post("/api/orders", json=order("b-1", qty=3), headers=ALICE)
        order_id = sell.json()["order_id"]
        first = await client.delete(f"/api/orders/{order_id}", headers=BOB)
        again = await client.delete(f"/api/orders/{order_id}", headers=BOB)
        late_buy = await client.post("/api/orders", json=order("b-2", qty=3), headers=ALICE)
    assert first.status_code == 200
    assert "Idempotent-Replay" not in first.headers
    assert first.json()["status"] == "cancelled"
    assert (first.json()["filled_qty"], first.json()["leaves_qty"]) == (3, 0)
    assert (again.status_code, again.headers["Idempotent-Replay"]) == (200, "true")
    assert again.json() == first.json()
    assert late_buy.json()["status"] == "new"  # the cancelled sell no longer trades


async def test_cancel_of_a_filled_order_is_409_and_of_another_account_404(
    in_process: InProcess,
) -> None:
    async with in_process(TWO_ACCOUNTS) as client:
        sell = await client.post("/api/orders", json=order("s-1", side="sell"), headers=BOB)
        await client.post("/api/orders", json=order("b-1"), headers=ALICE)
        order_id = sell.json()["order_id"]
        filled = await client.delete(f"/api/orders/{order_id}", headers=BOB)
        foreign = await client.delete(f"/api/orders/{order_id}", headers=ALICE)
        unknown = await client.get("/api/orders/ord-nope", headers=ALICE)
    assert (filled.status_code, filled.json()["error"]["code"]) == (409, "ORDER_NOT_CANCELLABLE")
    assert (foreign.status_code, foreign.json()["error"]["code"]) == (404, "ORDER_NOT_FOUND")
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "ORDER_NOT_FOUND")


async def test_a_malformed_order_is_422_with_the_fields_named(in_process: InProcess) -> None:
    async with in_process() as client:
        bad = await client.post("/api/orders", json=order(qty=0, side="hold"), headers=key())
    assert bad.status_code == 422
    error = bad.json()["error"]
    assert error["code"] == "INVALID_REQUEST"
    assert {d["field"] for d in error["details"]} == {"qty", "side"}
