"""The errors the trading services raise, each with a stable machine-readable code.

REST answers them as `{"error": {"code", "message"}}` with the status in api/errors.py;
GraphQL puts the code in the error's `extensions`. Messages say what to do next.
"""

from __future__ import annotations


class TradingError(Exception):
    """Base of every business error; `code` names the rule, the message explains it."""

    code = "TRADING_ERROR"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnknownSymbolError(TradingError, LookupError):
    code = "UNKNOWN_SYMBOL"


class RiskRejectedError(TradingError):
    """A pre-trade risk limit refused the order; `code` names the limit."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class IdempotencyConflictError(TradingError):
    code = "IDEMPOTENCY_CONFLICT"


class OrderNotFoundError(TradingError, LookupError):
    code = "ORDER_NOT_FOUND"


class OrderNotCancellableError(TradingError):
    code = "ORDER_NOT_CANCELLABLE"


class LedgerUnavailableError(TradingError):
    """The shared idempotency ledger could not be read or written (busy past its timeout, or
    an I/O error); nothing was changed, so the same request may be retried."""

    code = "LEDGER_UNAVAILABLE"
