"""Trading API under /api: quotes and idempotent order submission."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response

from finance_trading.middleware.faults import inject_faults
from finance_trading.models.trading import Order, OrderRequest, Quote
from finance_trading.services.orders import IdempotencyConflictError, OrderBook
from finance_trading.services.quotes import UnknownSymbolError, quote_for

router = APIRouter(prefix="/api", tags=["trading"], dependencies=[Depends(inject_faults)])


def order_book(request: Request) -> OrderBook:
    book: OrderBook = request.app.state.order_book
    return book


@router.get("/quote/{symbol}")
async def get_quote(symbol: str) -> Quote:
    try:
        return quote_for(symbol)
    except UnknownSymbolError as error:
        raise HTTPException(status_code=404, detail=str(error)) from None


@router.post("/orders", status_code=201)
async def submit_order(
    order: OrderRequest, response: Response, book: Annotated[OrderBook, Depends(order_book)]
) -> Order:
    """201 for a new order; 200 with `Idempotent-Replay: true` for a retried one."""
    try:
        accepted, replayed = book.submit(order)
    except UnknownSymbolError as error:
        raise HTTPException(status_code=422, detail=str(error)) from None
    except IdempotencyConflictError as error:
        raise HTTPException(status_code=409, detail=str(error)) from None
    if replayed:
        response.status_code = 200
        response.headers["Idempotent-Replay"] = "true"
    return accepted
