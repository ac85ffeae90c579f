"""The shared idempotency ledger: a retry on the other version replays, never duplicates.

Two versions are two apps (in process) or two `python -m finance_trading` processes given the
same APP_DATA_DIR, as the engine runs a stable and a canary.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from finance_kit import ALICE_KEY, BOB_KEY, TWO_ACCOUNTS, key, order
from finance_trading.models.trading import OrderRequest
from finance_trading.services.errors import LedgerUnavailableError
from finance_trading.services.ledger import DB_FILE, SqliteOrderLedger
from finance_trading.services.orders import OrderService
from finance_trading.services.risk import RiskLimits

if TYPE_CHECKING:  # conftest is pytest's, so import it for the type names only
    from ops_kit.testing import AppProcess, InProcess

StartApp = Callable[[dict[str, str]], "AppProcess"]
ALICE, BOB = key(ALICE_KEY), key(BOB_KEY)
REPLAY = "Idempotent-Replay"


@pytest.fixture
def shared(tmp_path: Path) -> dict[str, str]:
    """The environment of both versions: one APP_DATA_DIR, as the engine gives an app."""
    data = tmp_path / "data"
    data.mkdir()
    return {"APP_DATA_DIR": str(data)}


def ledger_rows(env: dict[str, str]) -> list[tuple[Any, ...]]:
    with sqlite3.connect(Path(env["APP_DATA_DIR"]) / DB_FILE) as db:
        return db.execute(
            "SELECT account, client_order_id, symbol, side, qty, limit_price, order_id "
            "FROM order_ledger ORDER BY order_id"
        ).fetchall()


async def test_a_retry_on_the_other_version_replays_the_order(
    in_process: InProcess, shared: dict[str, str]
) -> None:
    async with in_process(shared) as canary, in_process(shared) as stable:
        first = await canary.post("/api/orders", json=order(), headers=key())
        retry = await stable.post("/api/orders", json=order(limit_price="190.5"), headers=key())
        again = await canary.post("/api/orders", json=order(), headers=key())
        stable_book = (await stable.get("/api/orders", headers=key())).json()
    assert first.status_code == 201
    assert (retry.status_code, retry.headers[REPLAY]) == (200, "true")
    assert retry.json() == first.json()  # same order id, fields and timestamps
    assert (again.status_code, again.json()) == (200, first.json())
    assert stable_book == []  # the order rests in the canary's book only
    order_id = first.json()["order_id"]
    assert ledger_rows(shared) == [("demo", "c-1", "AAPL", "buy", 10, "190.5", order_id)]


async def test_a_conflicting_retry_on_the_other_version_is_409(
    in_process: InProcess, shared: dict[str, str]
) -> None:
    async with in_process(shared) as canary, in_process(shared) as stable:
        await canary.post("/api/orders", json=order(), headers=key())
        conflict = await stable.post("/api/orders", json=order(side="sell"), headers=key())
    assert conflict.status_code == 409
    error = conflict.json()["error"]
    assert error["code"] == "IDEMPOTENCY_CONFLICT"
    assert "side buy, not sell" in error["message"]
    assert len(ledger_rows(shared)) == 1


async def test_a_retry_after_a_restart_replays_from_the_ledger(
    in_process: InProcess, shared: dict[str, str]
) -> None:
    async with in_process(shared) as before:
        first = await before.post("/api/orders", json=order(), headers=key())
    async with in_process(shared) as after:  # a new process: its memory starts empty
        retry = await after.post("/api/orders", json=order(), headers=key())
    assert (retry.status_code, retry.json()) == (200, first.json())


async def test_a_version_with_tighter_limits_still_replays_what_the_other_accepted(
    in_process: InProcess, shared: dict[str, str]
) -> None:
    tight = {**shared, "APP_MAX_ORDER_QTY": "5"}
    async with in_process(shared) as stable, in_process(tight) as canary:
        first = await stable.post("/api/orders", json=order(qty=10), headers=key())
        retry = await canary.post("/api/orders", json=order(qty=10), headers=key())
        new = await canary.post("/api/orders", json=order("c-2", qty=10), headers=key())
    assert (retry.status_code, retry.json()) == (200, first.json())
    assert (new.status_code, new.json()["error"]["code"]) == (422, "MAX_QTY")
    assert len(ledger_rows(shared)) == 1  # a rejected order claims nothing


async def test_the_other_version_replays_the_order_as_accepted_the_owner_as_it_is_now(
    in_process: InProcess, shared: dict[str, str]
) -> None:
    env = {**shared, **TWO_ACCOUNTS}
    async with in_process(env) as canary, in_process(env) as stable:
        await canary.post("/api/orders", json=order("s-1", side="sell"), headers=BOB)
        buy = await canary.post("/api/orders", json=order("b-1", qty=4), headers=ALICE)
        sell_on_owner = await canary.post(
            "/api/orders", json=order("s-1", side="sell"), headers=BOB
        )
        sell_elsewhere = await stable.post(
            "/api/orders", json=order("s-1", side="sell"), headers=BOB
        )
    assert buy.json()["status"] == "filled"
    assert (sell_on_owner.json()["status"], sell_on_owner.json()["filled_qty"]) == (
        "partially_filled",
        4,
    )
    assert (sell_elsewhere.json()["status"], sell_elsewhere.json()["filled_qty"]) == ("new", 0)
    assert sell_elsewhere.json()["order_id"] == sell_on_owner.json()["order_id"]


async def test_cancel_is_idempotent_across_versions(
    in_process: InProcess, shared: dict[str, str]
) -> None:
    env = {**shared, **TWO_ACCOUNTS}
    async with in_process(env) as canary, in_process(env) as stable:
        sell = await canary.post("/api/orders", json=order("s-1", side="sell"), headers=BOB)
        await canary.post("/api/orders", json=order("b-1", qty=3), headers=ALICE)
        order_id = sell.json()["order_id"]
        open_elsewhere = await stable.delete(f"/api/orders/{order_id}", headers=BOB)
        first = await canary.delete(f"/api/orders/{order_id}", headers=BOB)
        retry = await stable.delete(f"/api/orders/{order_id}", headers=BOB)
        foreign = await stable.delete(f"/api/orders/{order_id}", headers=ALICE)
        resubmit = await stable.post("/api/orders", json=order("s-1", side="sell"), headers=BOB)
    assert (open_elsewhere.status_code, open_elsewhere.json()["error"]["code"]) == (
        404,
        "ORDER_NOT_FOUND",
    )
    assert "accepted by another version" in open_elsewhere.json()["error"]["message"]
    assert (first.status_code, first.json()["status"]) == (200, "cancelled")
    assert REPLAY not in first.headers
    assert (retry.status_code, retry.headers[REPLAY]) == (200, "true")
    assert retry.json() == first.json()  # cancelled with its 3 filled, as the owner answered
    assert (foreign.status_code, foreign.json()["error"]["code"]) == (404, "ORDER_NOT_FOUND")
    assert "accepted by another version" not in foreign.json()["error"]["message"]
    assert (resubmit.status_code, resubmit.json()) == (200, first.json())


async def test_graphql_submit_on_the_other_version_is_replayed(
    in_process: InProcess, shared: dict[str, str]
) -> None:
    mutation = (
        "mutation ($o: OrderInput!) { submitOrder(order: $o) { replayed order { orderId } } }"
    )
    variables = {
        "o": {"clientOrderId": "g-1", "symbol": "AAPL", "side": "BUY", "qty": 1,
              "limitPrice": "190.00"},
    }  # fmt: skip
    async with in_process(shared) as canary, in_process(shared) as stable:
        answers = [
            (await app.post("/graphql", json={"query": mutation, "variables": variables},
                            headers=key())).json()["data"]["submitOrder"]
            for app in (canary, stable)
        ]  # fmt: skip
    assert [a["replayed"] for a in answers] == [False, True]
    assert answers[0]["order"]["orderId"] == answers[1]["order"]["orderId"]


async def test_without_app_data_dir_each_app_keeps_its_own_orders(
    in_process: InProcess, tmp_path: Path
) -> None:
    async with in_process() as canary, in_process() as stable:
        first = await canary.post("/api/orders", json=order(), headers=key())
        other = await stable.post("/api/orders", json=order(), headers=key())
        retry = await canary.post("/api/orders", json=order(), headers=key())
    assert (first.status_code, other.status_code, retry.status_code) == (201, 201, 200)
    assert other.json()["order_id"] != first.json()["order_id"]  # the old, per-process record


async def test_concurrent_submits_of_one_key_to_two_processes_create_one_order(
    app_process: StartApp, shared: dict[str, str]
) -> None:
    canary, stable = app_process(shared), app_process(shared)
    await asyncio.gather(asyncio.to_thread(canary.wait_ready), asyncio.to_thread(stable.wait_ready))
    limits = httpx.Limits(max_connections=20)
    async with (
        httpx.AsyncClient(base_url=canary.base_url, limits=limits, timeout=10) as to_canary,
        httpx.AsyncClient(base_url=stable.base_url, limits=limits, timeout=10) as to_stable,
    ):
        for round_ in range(5):
            body = order(f"race-{round_}")
            answers = await asyncio.gather(
                *(
                    client.post("/api/orders", json=body, headers=key())
                    for _ in range(10)
                    for client in (to_canary, to_stable)
                )
            )
            assert sorted(a.status_code for a in answers) == [200] * 19 + [201], [
                a.text for a in answers if a.status_code not in (200, 201)
            ]
            assert all(a.headers.get(REPLAY) == "true" for a in answers if a.status_code == 200)
            assert len({a.json()["order_id"] for a in answers}) == 1
        books = [
            len((await client.get("/api/orders", headers=key())).json())
            for client in (to_canary, to_stable)
        ]
    assert sum(books) == 5  # each order rests in the book of exactly one version
    assert len(ledger_rows(shared)) == 5


def test_an_unusable_app_data_dir_stops_the_start(app_process: StartApp, tmp_path: Path) -> None:
    app = app_process({"APP_DATA_DIR": str(tmp_path / "missing")})
    assert app.process.wait(timeout=15) == 1
    assert "APP_DATA_DIR must be an existing folder" in app.log()


def test_the_ledger_file_is_wal_and_a_held_lock_is_a_retryable_refusal(tmp_path: Path) -> None:
    ledger = SqliteOrderLedger.open(tmp_path, busy_timeout_ms=50)
    limits = RiskLimits.model_validate(
        {"max_order_qty": 100, "max_order_notional": "100000", "price_band_pct": "5"}
    )
    service = OrderService(limits, clock=lambda: datetime(2025, 1, 2, tzinfo=UTC), ledger=ledger)
    request = OrderRequest.model_validate(order(qty=1, limit_price="190.00"))
    other = sqlite3.connect(tmp_path / DB_FILE, isolation_level=None)
    try:
        assert other.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        other.execute("BEGIN IMMEDIATE")  # the other version holds the write lock too long
        with pytest.raises(LedgerUnavailableError, match="not accepted; retry with the same"):
            service.submit("demo", request)
        assert service.orders("demo") == []  # nothing was accepted
        other.execute("ROLLBACK")
        accepted = service.submit("demo", request)
    finally:
        other.close()
        ledger.close()
    assert (accepted.replayed, accepted.order.status) == (False, "new")
