"""Batch-record API under /api/batches: batches, signed steps, corrections, release, audit."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Response
from ops_kit.faults import inject_faults

from pharma_manufacturing.api.dependencies import Reader, ServicesDep, Writer
from pharma_manufacturing.models.audit import AuditEntry
from pharma_manufacturing.models.batches import (
    Batch,
    BatchCreate,
    BatchRecord,
    ReleaseRequest,
    SignedStep,
    StepCorrection,
    StepRequest,
)
from pharma_manufacturing.models.signatures import Signature, SignatureRequest, StepVerification

router = APIRouter(prefix="/api/batches", tags=["batches"], dependencies=[Depends(inject_faults)])

# Writes are plain `def`: FastAPI runs them in its thread pool, so a password check (scrypt,
# tens of milliseconds) or a wait for the write lock never blocks the event loop. Reads are
# `async` and go through `services.read` (inline on SQLite, a worker thread otherwise).


@router.get("/{batch_id}")
async def get_batch(batch_id: str, services: ServicesDep, _: Reader) -> Batch:
    """The batch and its steps: small and fast (the engine samples this read)."""
    return await services.read(services.batches.get, batch_id)


@router.get("/{batch_id}/record")
async def get_batch_record(batch_id: str, services: ServicesDep, _: Reader) -> BatchRecord:
    """The whole record: steps with verified signatures, approvals, deviations, genealogy."""
    return await services.read(services.batches.record, batch_id)


@router.post("", status_code=201)
def create_batch(request: BatchCreate, services: ServicesDep, user: Writer) -> Batch:
    """Start a batch (supervisor or QA)."""
    return services.batches.create(user, request)


@router.post("/{batch_id}/steps", status_code=201)
def record_step(
    batch_id: str,
    step: StepRequest,
    response: Response,
    services: ServicesDep,
    user: Writer,
    idempotency_key: Annotated[str, Header(alias="Idempotency-Key", min_length=1, max_length=128)],
) -> SignedStep:
    """Execute a step, signed "performed". 201 for a new step; 200 with
    `Idempotent-Replay: true` for a retry with the same key and body; 409 for another body."""
    record, replayed = services.steps.record(user, batch_id, idempotency_key, step)
    if replayed:
        response.status_code = 200
        response.headers["Idempotent-Replay"] = "true"
    return record


@router.patch("/{batch_id}/steps/{sequence}")
def correct_step(
    batch_id: str, sequence: int, correction: StepCorrection, services: ServicesDep, user: Writer
) -> SignedStep:
    """Correct an executed step; `reason` is mandatory, the audit trail keeps the old values."""
    return services.steps.correct(user, batch_id, sequence, correction)


@router.post("/{batch_id}/steps/{sequence}/signatures", status_code=201)
def sign_step(
    batch_id: str, sequence: int, request: SignatureRequest, services: ServicesDep, user: Writer
) -> Signature:
    """Sign a step again: "verified" by a second person, or "performed" after a correction."""
    return services.steps.sign(user, batch_id, sequence, request)


@router.get("/{batch_id}/steps/{sequence}/signatures/verify")
async def verify_step_signatures(
    batch_id: str, sequence: int, services: ServicesDep, _: Reader
) -> StepVerification:
    """200 when every signature is bound to this step; 409 SIGNATURE_NOT_BOUND otherwise."""
    return await services.read(services.steps.verify, batch_id, sequence)


@router.post("/{batch_id}/release")
def release_batch(
    batch_id: str, request: ReleaseRequest, services: ServicesDep, user: Writer
) -> BatchRecord:
    """QA approves the complete record (signature "approved") and may book the product lot."""
    return services.release.release(user, batch_id, request)


@router.get("/{batch_id}/audit")
async def get_audit_trail(batch_id: str, services: ServicesDep, _: Reader) -> list[AuditEntry]:
    """Every audit-trail entry about the batch and its records, oldest first. Read-only:
    there is no route that changes or removes an entry."""
    return await services.read(services.batches.audit_trail, batch_id)
