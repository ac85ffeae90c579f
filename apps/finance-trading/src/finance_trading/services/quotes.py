"""Deterministic synthetic quotes: fixed mid prices and a fixed spread, for a few symbols.

The mid price is also the reference price the pre-trade price band is measured from.
"""

from __future__ import annotations

from decimal import Decimal

from finance_trading.models.trading import Quote
from finance_trading.services.errors import UnknownSymbolError

MID_PRICES: dict[str, Decimal] = {
    "AAPL": Decimal("190.00"),
    "MSFT": Decimal("410.00"),
    "GOOG": Decimal("140.00"),
    "AMZN": Decimal("180.00"),
    "NVDA": Decimal("120.00"),
    "GME": Decimal("25.00"),
}
HALF_SPREAD = Decimal("0.02")


def reference_price(symbol: str) -> Decimal:
    """The symbol's mid price; raises UnknownSymbolError for a symbol that is not quoted."""
    mid = MID_PRICES.get(symbol.upper())
    if mid is None:
        known = ", ".join(sorted(MID_PRICES))
        raise UnknownSymbolError(f"unknown symbol '{symbol}': quoted symbols are {known}")
    return mid


def quote_for(symbol: str) -> Quote:
    """Bid and ask around the symbol's mid price; raises UnknownSymbolError otherwise."""
    mid = reference_price(symbol)
    return Quote(symbol=symbol.upper(), bid=mid - HALF_SPREAD, ask=mid + HALF_SPREAD)
