"""Deterministic synthetic quotes: fixed mid prices and a fixed spread, for a few symbols."""

from __future__ import annotations

from decimal import Decimal

from finance_trading.models.trading import Quote

MID_PRICES: dict[str, Decimal] = {
    "AAPL": Decimal("190.00"),
    "MSFT": Decimal("410.00"),
    "GOOG": Decimal("140.00"),
    "AMZN": Decimal("180.00"),
    "NVDA": Decimal("120.00"),
}
HALF_SPREAD = Decimal("0.02")


class UnknownSymbolError(LookupError):
    def __init__(self, symbol: str) -> None:
        known = ", ".join(sorted(MID_PRICES))
        super().__init__(f"unknown symbol '{symbol}': quoted symbols are {known}")


def quote_for(symbol: str) -> Quote:
    """Bid and ask around the symbol's mid price; raises UnknownSymbolError otherwise."""
    mid = MID_PRICES.get(symbol.upper())
    if mid is None:
        raise UnknownSymbolError(symbol)
    return Quote(symbol=symbol.upper(), bid=mid - HALF_SPREAD, ask=mid + HALF_SPREAD)
