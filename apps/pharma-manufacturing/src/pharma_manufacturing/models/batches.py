"""Batches and executed manufacturing steps as they cross the API."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

BatchStatus = Literal["in_progress", "released"]


class StepRequest(BaseModel):
    """One executed step of a batch record; the `Idempotency-Key` header makes retries safe."""

    step: str = Field(min_length=1, max_length=64)
    operator: str = Field(min_length=1, max_length=64)
    parameters: dict[str, float] = Field(default_factory=dict)


class StepRecord(StepRequest):
    sequence: int
    idempotency_key: str
    recorded_at: datetime


class Batch(BaseModel):
    batch_id: str
    product: str
    status: BatchStatus
    steps: list[StepRecord] = Field(default_factory=list)
