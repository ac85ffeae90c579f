"""Why a record operation was refused: one type per reason, each with a stable `code`.

The messages say what to do next. The API maps each type to an HTTP status (api/errors.py).
"""

from __future__ import annotations

from typing import Any


class RecordError(Exception):
    """Base of every refusal; `code` is what API clients match on, `details` extra fields."""

    code = "RECORD_ERROR"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.details = details


class NotFoundError(RecordError):
    code = "NOT_FOUND"


class AlreadyExistsError(RecordError):
    code = "ALREADY_EXISTS"


class AuthenticationError(RecordError):
    code = "NOT_AUTHENTICATED"


class SignerNotAuthenticatedError(RecordError):
    """The re-authentication at signing failed: wrong user id or password."""

    code = "SIGNER_NOT_AUTHENTICATED"


class PermissionDeniedError(RecordError):
    code = "NOT_PERMITTED"


class BatchReleasedError(RecordError):
    code = "BATCH_RELEASED"


class IdempotencyConflictError(RecordError):
    code = "IDEMPOTENCY_CONFLICT"


class ReasonRequiredError(RecordError):
    code = "REASON_REQUIRED"


class SignatureNotBoundError(RecordError):
    """A signature does not verify against the record it sits on: copied, or record altered."""

    code = "SIGNATURE_NOT_BOUND"


class StepNotSignedError(RecordError):
    code = "STEP_NOT_SIGNED"


class OpenDeviationsError(RecordError):
    code = "OPEN_DEVIATIONS"


class InsufficientQuantityError(RecordError):
    code = "INSUFFICIENT_QUANTITY"


class InvalidStateError(RecordError):
    code = "INVALID_STATE"
