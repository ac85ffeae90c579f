"""The services' own records: an order as the book works it, a trade, a position.

Plain mutable dataclasses, changed only by the order service under its lock; the API layer
turns them into response models.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Literal

Side = Literal["buy", "sell"]
OrderStatus = Literal["new", "partially_filled", "filled", "cancelled"]
OPEN_STATUSES = ("new", "partially_filled")


@dataclass(slots=True, eq=False)
class OrderRecord:
    """A limit order and its fills so far; `seq` is its arrival, for time priority."""

    order_id: str
    account: str
    client_order_id: str
    symbol: str
    side: Side
    qty: int
    limit_price: Decimal
    seq: int
    created_at: datetime
    updated_at: datetime
    status: OrderStatus = "new"
    filled_qty: int = 0
    filled_notional: Decimal = Decimal(0)

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def leaves_qty(self) -> int:
        """What may still trade: nothing once filled or cancelled (FIX LeavesQty)."""
        return self.qty - self.filled_qty if self.is_open else 0

    @property
    def avg_fill_price(self) -> Decimal | None:
        return self.filled_notional / self.filled_qty if self.filled_qty else None

    def fill(self, qty: int, price: Decimal, at: datetime) -> None:
        self.filled_qty += qty
        self.filled_notional += qty * price
        self.status = "filled" if self.filled_qty == self.qty else "partially_filled"
        self.updated_at = at

    def cancel(self, at: datetime) -> None:
        self.status = "cancelled"
        self.updated_at = at


@dataclass(frozen=True, slots=True)
class Trade:
    """A match: `qty` at `price` (the resting order's limit) between a buy and a sell."""

    trade_id: str
    symbol: str
    qty: int
    price: Decimal
    buy: OrderRecord
    sell: OrderRecord
    executed_at: datetime


@dataclass(slots=True)
class Position:
    """An account's net position in one symbol, from its fills (qty > 0 is long)."""

    account: str
    symbol: str
    qty: int = 0
    bought_qty: int = 0
    sold_qty: int = 0
    net_cash: Decimal = Decimal(0)  # sale proceeds minus purchase cost

    def apply(self, side: Side, qty: int, price: Decimal) -> None:
        if side == "buy":
            self.qty += qty
            self.bought_qty += qty
            self.net_cash -= qty * price
        else:
            self.qty -= qty
            self.sold_qty += qty
            self.net_cash += qty * price
