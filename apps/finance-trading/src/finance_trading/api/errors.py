"""Business errors as HTTP answers: `{"error": {"code", "message"}}` with a fitting status."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from finance_trading.middleware.auth import CHALLENGE, DrillRefused
from finance_trading.services.errors import (
    IdempotencyConflictError,
    LedgerUnavailableError,
    OrderNotCancellableError,
    OrderNotFoundError,
    RiskRejectedError,
    TradingError,
    UnknownSymbolError,
)

STATUS: dict[type[TradingError], int] = {
    RiskRejectedError: 422,
    IdempotencyConflictError: 409,
    OrderNotCancellableError: 409,
    OrderNotFoundError: 404,
    UnknownSymbolError: 404,  # a quote for a symbol that is not quoted
    LedgerUnavailableError: 503,  # nothing changed: the proxy may retry it on another version
}


def error_response(status: int, code: str, message: str, **extra: object) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, **extra}}, status)


async def trading_error(_: Request, error: TradingError) -> JSONResponse:
    return error_response(STATUS.get(type(error), 400), error.code, error.message)


async def invalid_request(_: Request, error: RequestValidationError) -> JSONResponse:
    """FastAPI's 422 for a body or path that does not fit the model, in the same shape."""
    problems = [
        {"field": ".".join(str(part) for part in e["loc"][1:]), "problem": e["msg"]}
        for e in error.errors()
    ]
    summary = "; ".join(f"{p['field'] or 'body'}: {p['problem']}" for p in problems)
    return error_response(422, "INVALID_REQUEST", summary, details=problems)


async def drill_refused(_: Request, error: DrillRefused) -> JSONResponse:
    """A drill call without the right key, in the shape the API-key check answers with."""
    answer = error_response(error.status, error.code, error.message)
    if error.status == 401:
        answer.headers["WWW-Authenticate"] = CHALLENGE.decode()
    return answer


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(TradingError, trading_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, invalid_request)  # type: ignore[arg-type]
    app.add_exception_handler(DrillRefused, drill_refused)  # type: ignore[arg-type]
