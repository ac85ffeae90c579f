"""Deviation API under /api/batches/{batch_id}/deviations: record, list, close."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from ops_kit.faults import inject_faults

from pharma_manufacturing.api.dependencies import Reader, ServicesDep, Writer
from pharma_manufacturing.models.deviations import Deviation, DeviationClose, DeviationCreate

router = APIRouter(
    prefix="/api/batches/{batch_id}/deviations",
    tags=["deviations"],
    dependencies=[Depends(inject_faults)],
)


@router.post("", status_code=201)
def record_deviation(
    batch_id: str, request: DeviationCreate, services: ServicesDep, user: Writer
) -> Deviation:
    """Record a deviation against the batch, or one of its steps; it stays open until closed."""
    return services.deviations.record(user, batch_id, request)


@router.get("")
async def list_deviations(batch_id: str, services: ServicesDep, _: Reader) -> list[Deviation]:
    return await services.read(services.deviations.for_batch, batch_id)


@router.post("/{deviation_id}/close")
def close_deviation(
    batch_id: str,
    deviation_id: int,
    request: DeviationClose,
    services: ServicesDep,
    user: Writer,
) -> Deviation:
    """QA closes a deviation with its resolution (the reason in the audit trail)."""
    return services.deviations.close(user, batch_id, deviation_id, request)
