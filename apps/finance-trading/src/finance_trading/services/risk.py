"""Pre-trade risk checks: restricted and unknown symbols, max qty, max notional, price band.

Each limit rejects with its own code (RESTRICTED_SYMBOL, UNKNOWN_SYMBOL, MAX_QTY,
MAX_NOTIONAL, PRICE_BAND) and a message that names the numbers that decided it.
"""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from finance_trading.models.trading import OrderRequest
from finance_trading.services.errors import RiskRejectedError, UnknownSymbolError
from finance_trading.services.quotes import reference_price


class RiskLimits(BaseModel):
    """The limits of one environment, from config/<env>.yaml and APP_* overrides."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_order_qty: int = Field(gt=0)
    max_order_notional: Decimal = Field(gt=0)  # qty * limit price, in the quote currency
    price_band_pct: Decimal = Field(gt=0, le=100)  # largest distance from the reference price
    restricted_symbols: frozenset[str] = frozenset()

    @field_validator("restricted_symbols")
    @classmethod
    def _upper_case_symbols(cls, symbols: frozenset[str]) -> frozenset[str]:
        return frozenset(symbol.strip().upper() for symbol in symbols if symbol.strip())


def check_order(order: OrderRequest, limits: RiskLimits) -> None:
    """Raise RiskRejectedError for the first limit the order breaks; return if it breaks none."""
    symbol = order.symbol
    if symbol in limits.restricted_symbols:
        raise RiskRejectedError(
            "RESTRICTED_SYMBOL", f"{symbol} is on the restricted list: orders in it are refused"
        )
    try:
        reference = reference_price(symbol)
    except UnknownSymbolError as error:
        raise RiskRejectedError("UNKNOWN_SYMBOL", error.message) from None
    if order.qty > limits.max_order_qty:
        raise RiskRejectedError(
            "MAX_QTY",
            f"qty {order.qty} is more than the maximum of {limits.max_order_qty} per order",
        )
    notional = order.qty * order.limit_price
    if notional > limits.max_order_notional:
        raise RiskRejectedError(
            "MAX_NOTIONAL",
            f"notional {notional:,.2f} (qty {order.qty} x limit {order.limit_price:.2f}) is more "
            f"than the maximum of {limits.max_order_notional:,.2f} per order",
        )
    if abs(order.limit_price - reference) * 100 > limits.price_band_pct * reference:
        raise RiskRejectedError(
            "PRICE_BAND",
            f"limit {order.limit_price:.2f} is more than {limits.price_band_pct}% from the "
            f"reference price {reference:.2f} of {symbol}",
        )
