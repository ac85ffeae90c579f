"""Batch-record API under /api: read a batch, record an executed step idempotently."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Request, Response

from pharma_manufacturing.middleware.faults import inject_faults
from pharma_manufacturing.models.batches import Batch, StepRecord, StepRequest
from pharma_manufacturing.services.batches import (
    BatchNotFoundError,
    BatchRegistry,
    BatchReleasedError,
    IdempotencyConflictError,
)

router = APIRouter(prefix="/api", tags=["batches"], dependencies=[Depends(inject_faults)])


def batch_registry(request: Request) -> BatchRegistry:
    registry: BatchRegistry = request.app.state.batches
    return registry


Registry = Annotated[BatchRegistry, Depends(batch_registry)]


@router.get("/batches/{batch_id}")
async def get_batch(batch_id: str, batches: Registry) -> Batch:
    try:
        return batches.get(batch_id)
    except BatchNotFoundError as error:
        raise HTTPException(status_code=404, detail=str(error)) from None


@router.post("/batches/{batch_id}/steps", status_code=201)
async def record_step(
    batch_id: str,
    step: StepRequest,
    response: Response,
    batches: Registry,
    idempotency_key: Annotated[str, Header(alias="Idempotency-Key", min_length=1, max_length=128)],
) -> StepRecord:
    """201 for a new step; 200 with `Idempotent-Replay: true` for a retried one."""
    try:
        record, replayed = batches.record_step(batch_id, idempotency_key, step)
    except BatchNotFoundError as error:
        raise HTTPException(status_code=404, detail=str(error)) from None
    except (BatchReleasedError, IdempotencyConflictError) as error:
        raise HTTPException(status_code=409, detail=str(error)) from None
    if replayed:
        response.status_code = 200
        response.headers["Idempotent-Replay"] = "true"
    return record
