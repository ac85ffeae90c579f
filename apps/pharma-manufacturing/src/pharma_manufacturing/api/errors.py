"""Refusals as HTTP answers: `{"code": ..., "detail": ...}` with the status each reason gets."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse

from pharma_manufacturing.services import errors

STATUS_BY_ERROR: tuple[tuple[type[errors.RecordError], int], ...] = (
    (errors.NotFoundError, 404),
    (errors.AuthenticationError, 401),
    (errors.SignerNotAuthenticatedError, 401),
    (errors.PermissionDeniedError, 403),
    (errors.ReasonRequiredError, 422),
    (errors.AlreadyExistsError, 409),
    (errors.BatchReleasedError, 409),
    (errors.IdempotencyConflictError, 409),
    (errors.SignatureNotBoundError, 409),
    (errors.StepNotSignedError, 409),
    (errors.OpenDeviationsError, 409),
    (errors.InsufficientQuantityError, 409),
    (errors.InvalidStateError, 409),
)


def status_for(error: errors.RecordError) -> int:
    return next((status for kind, status in STATUS_BY_ERROR if isinstance(error, kind)), 400)


async def record_error_response(_: Request, error: Exception) -> JSONResponse:
    """Exception handler for every RecordError."""
    assert isinstance(error, errors.RecordError)
    status = status_for(error)
    headers = (
        {"WWW-Authenticate": "Bearer"} if isinstance(error, errors.AuthenticationError) else None
    )
    body = {"code": error.code, "detail": str(error), **error.details}
    return JSONResponse(body, status_code=status, headers=headers)
