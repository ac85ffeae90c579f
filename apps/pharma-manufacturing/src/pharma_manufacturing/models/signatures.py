"""Electronic signatures as they cross the API: the signing request and the shown signature."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

Meaning = Literal["performed", "verified", "approved"]


class SignatureRequest(BaseModel):
    """The signer re-authenticates at signing: user id and password, every time."""

    user_id: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256, repr=False)
    meaning: Meaning = "performed"


class Signature(BaseModel):
    """A signature as the record shows it: printed name, UTC date and time, meaning."""

    id: int
    record_type: Literal["step", "batch"]
    record_key: str
    record_revision: int
    user_id: str
    printed_name: str
    meaning: str
    signed_at: datetime
    manifestation: str  # "Olivia Novak (olivia), 2026-05-09 07:35:25 UTC, performed"
    status: Literal["bound", "superseded", "not_bound"]
    verified: bool  # the seal matches the record it is on (bound or superseded)
    problem: str | None = None


class StepVerification(BaseModel):
    batch_id: str
    sequence: int
    revision: int
    verified: bool  # every signature on the step is bound to it (or superseded)
    signed: bool  # the current revision carries a bound "performed" signature
    signatures: list[Signature]
