"""Quotes, orders, trades and positions as they cross the REST API (decimals as JSON strings)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field, field_validator

if TYPE_CHECKING:  # the records are the services'; the models only read them
    from finance_trading.services.orders import Fill
    from finance_trading.services.records import OrderRecord, Position

Side = Literal["buy", "sell"]
OrderStatus = Literal["new", "partially_filled", "filled", "cancelled"]


class Quote(BaseModel):
    symbol: str
    bid: Decimal
    ask: Decimal
    currency: str = "USD"


class OrderRequest(BaseModel):
    """A limit order; `client_order_id` (FIX ClOrdID) makes a retried submit safe."""

    client_order_id: str = Field(min_length=1, max_length=64)
    symbol: str = Field(min_length=1, max_length=12)
    side: Side
    qty: int = Field(gt=0)
    limit_price: Decimal = Field(gt=0, max_digits=12, decimal_places=4)

    @field_validator("symbol")
    @classmethod
    def _upper_case_symbol(cls, symbol: str) -> str:
        return symbol.upper()


class Order(BaseModel):
    """An order and how much of it traded: `leaves_qty` may still trade, 0 once done."""

    order_id: str
    client_order_id: str
    account: str
    symbol: str
    side: Side
    qty: int
    limit_price: Decimal
    status: OrderStatus
    filled_qty: int
    leaves_qty: int
    avg_fill_price: Decimal | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_record(cls, order: OrderRecord) -> Order:
        return cls(
            order_id=order.order_id,
            client_order_id=order.client_order_id,
            account=order.account,
            symbol=order.symbol,
            side=order.side,
            qty=order.qty,
            limit_price=order.limit_price,
            status=order.status,
            filled_qty=order.filled_qty,
            leaves_qty=order.leaves_qty,
            avg_fill_price=_price(order.avg_fill_price),
            created_at=order.created_at,
            updated_at=order.updated_at,
        )


class TradeFill(BaseModel):
    """The account's side of one trade."""

    trade_id: str
    order_id: str
    symbol: str
    side: Side
    qty: int
    price: Decimal
    executed_at: datetime

    @classmethod
    def from_fill(cls, fill: Fill) -> TradeFill:
        trade, order = fill.trade, fill.order
        return cls(
            trade_id=trade.trade_id,
            order_id=order.order_id,
            symbol=trade.symbol,
            side=order.side,
            qty=trade.qty,
            price=trade.price,
            executed_at=trade.executed_at,
        )


class PositionView(BaseModel):
    """Net position in one symbol (qty > 0 is long); net_cash is proceeds minus cost."""

    symbol: str
    qty: int
    bought_qty: int
    sold_qty: int
    net_cash: Decimal

    @classmethod
    def from_record(cls, position: Position) -> PositionView:
        return cls(
            symbol=position.symbol,
            qty=position.qty,
            bought_qty=position.bought_qty,
            sold_qty=position.sold_qty,
            net_cash=position.net_cash,
        )


def _price(value: Decimal | None) -> Decimal | None:
    """An average price, rounded to the 4 places a limit price may have."""
    return None if value is None else value.quantize(Decimal("0.0001"))
