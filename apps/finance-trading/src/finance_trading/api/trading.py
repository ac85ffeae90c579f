"""REST trading API under /api: quotes (public), orders, trades and positions (API key)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from ops_kit.faults import inject_faults

from finance_trading.models.trading import Order, OrderRequest, PositionView, Quote, TradeFill
from finance_trading.services.orders import OrderService
from finance_trading.services.quotes import quote_for

router = APIRouter(prefix="/api", tags=["trading"], dependencies=[Depends(inject_faults)])

REPLAY_HEADER = "Idempotent-Replay"


# Dependencies are `async def` on purpose: FastAPI runs a plain `def` one in a worker thread,
# which costs more than the whole order submit.


async def order_service(request: Request) -> OrderService:
    service: OrderService = request.app.state.orders
    return service


async def account(request: Request) -> str:
    """The caller's account; the API-key middleware set it before any /api route but quotes."""
    name: str = request.state.account
    return name


Orders = Annotated[OrderService, Depends(order_service)]
Account = Annotated[str, Depends(account)]


@router.get("/quote/{symbol}")
async def get_quote(symbol: str) -> Quote:
    """Public delayed market data: no API key."""
    return quote_for(symbol)


@router.post("/orders", status_code=201)
async def submit_order(
    order: OrderRequest, response: Response, orders: Orders, account: Account
) -> Order:
    """201 for a new order; 200 with `Idempotent-Replay: true` for a retried one.

    Send `Idempotency-Key: <client_order_id>` as well, so that the proxy may retry the submit.
    """
    submission = orders.submit(account, order)
    if submission.replayed:
        response.status_code = 200
        response.headers[REPLAY_HEADER] = "true"
    return Order.from_record(submission.order)


@router.get("/orders")
async def list_orders(orders: Orders, account: Account) -> list[Order]:
    return [Order.from_record(order) for order in orders.orders(account)]


@router.get("/orders/{order_id}")
async def get_order(order_id: str, orders: Orders, account: Account) -> Order:
    return Order.from_record(orders.order(account, order_id))


@router.delete("/orders/{order_id}")
async def cancel_order(
    order_id: str, response: Response, orders: Orders, account: Account
) -> Order:
    """Cancel what is left; 200 with `Idempotent-Replay: true` if it was already cancelled."""
    cancellation = orders.cancel(account, order_id)
    if cancellation.replayed:
        response.headers[REPLAY_HEADER] = "true"
    return Order.from_record(cancellation.order)


@router.get("/trades")
async def list_trades(orders: Orders, account: Account) -> list[TradeFill]:
    return [TradeFill.from_fill(fill) for fill in orders.fills(account)]


@router.get("/positions")
async def list_positions(orders: Orders, account: Account) -> list[PositionView]:
    return [PositionView.from_record(position) for position in orders.positions(account)]
