"""Batches, executed steps and the production line's state as they cross the API."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from pharma_manufacturing.models.deviations import Deviation
from pharma_manufacturing.models.genealogy import Consumption, Lot, ProductLotRequest
from pharma_manufacturing.models.signatures import Signature, SignatureRequest

BatchStatus = Literal["in_progress", "released"]


class BatchCreate(BaseModel):
    batch_id: str = Field(pattern=r"^[A-Z0-9][A-Z0-9-]{0,31}$")
    product: str = Field(min_length=1, max_length=200)


class StepRequest(BaseModel):
    """One executed step, signed "performed"; the `Idempotency-Key` header makes retries safe."""

    step: str = Field(min_length=1, max_length=64)
    parameters: dict[str, float] = Field(default_factory=dict)
    equipment_id: str | None = Field(default=None, min_length=1, max_length=64)
    signature: SignatureRequest

    @field_validator("signature")
    @classmethod
    def _performed(cls, signature: SignatureRequest) -> SignatureRequest:
        if signature.meaning != "performed":
            raise ValueError("executing a step is signed with the meaning 'performed'")
        return signature


class StepCorrection(BaseModel):
    """Change an executed step; the reason is mandatory and goes into the audit trail."""

    parameters: dict[str, float] | None = None
    equipment_id: str | None = Field(default=None, min_length=1, max_length=64)
    reason: str | None = Field(default=None, max_length=2000)


class StepRecord(BaseModel):
    sequence: int
    step: str
    operator: str
    parameters: dict[str, float]
    equipment_id: str | None = None
    revision: int
    idempotency_key: str
    recorded_at: datetime


class SignedStep(StepRecord):
    signatures: list[Signature]


class Batch(BaseModel):
    """A batch and its steps: the small, fast read (`GET /api/batches/{batch_id}`)."""

    batch_id: str
    product: str
    status: BatchStatus
    started_at: datetime
    released_at: datetime | None = None
    created_by: str
    steps: list[StepRecord] = Field(default_factory=list)


class BatchRecord(Batch):
    """The whole batch record: signed steps, approvals, deviations and genealogy."""

    steps: list[SignedStep] = Field(default_factory=list)  # type: ignore[assignment]
    approvals: list[Signature] = Field(default_factory=list)
    deviations: list[Deviation] = Field(default_factory=list)
    consumed_lots: list[Consumption] = Field(default_factory=list)
    product_lots: list[Lot] = Field(default_factory=list)


class ReleaseRequest(BaseModel):
    """QA approves the batch record ("approved") and, optionally, books the lot it yielded."""

    signature: SignatureRequest
    product_lot: ProductLotRequest | None = None

    @field_validator("signature")
    @classmethod
    def _approved(cls, signature: SignatureRequest) -> SignatureRequest:
        if signature.meaning != "approved":
            raise ValueError("releasing a batch is signed with the meaning 'approved'")
        return signature


class BatchInProgress(BaseModel):
    batch_id: str
    product: str
    started_at: datetime


class LineStatus(BaseModel):
    """What the engine reads before a production deploy: every batch still in progress."""

    batches_in_progress: list[BatchInProgress]
    checked_at: datetime
