"""Quotes and orders as they cross the API (prices are decimals, sent as JSON strings)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, Field, field_validator


class Quote(BaseModel):
    symbol: str
    bid: Decimal
    ask: Decimal
    currency: str = "USD"


class OrderRequest(BaseModel):
    """A limit order; `client_order_id` makes a retried submit safe."""

    client_order_id: str = Field(min_length=1, max_length=64)
    symbol: str = Field(min_length=1, max_length=12)
    side: Literal["buy", "sell"]
    qty: int = Field(gt=0)
    limit_price: Decimal = Field(gt=0, max_digits=12, decimal_places=4)

    @field_validator("symbol")
    @classmethod
    def _upper_case_symbol(cls, symbol: str) -> str:
        return symbol.upper()


class Order(OrderRequest):
    order_id: str
    status: Literal["accepted"] = "accepted"
    accepted_at: datetime
