"""Genealogy API: receive lots, consume them into batches, trace forward and backward."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from ops_kit.faults import inject_faults

from pharma_manufacturing.api.dependencies import Reader, ServicesDep, Writer
from pharma_manufacturing.models.genealogy import (
    Consumption,
    ConsumptionRequest,
    Lot,
    LotCreate,
    Trace,
)

router = APIRouter(prefix="/api", tags=["genealogy"], dependencies=[Depends(inject_faults)])


@router.post("/lots", status_code=201)
def register_lot(request: LotCreate, services: ServicesDep, user: Writer) -> Lot:
    """Receive a material lot."""
    return services.genealogy.register_lot(user, request)


@router.get("/lots/{lot_id}")
async def get_lot(lot_id: str, services: ServicesDep, _: Reader) -> Lot:
    return await services.read(services.genealogy.lot, lot_id)


@router.post("/batches/{batch_id}/consumptions", status_code=201)
def consume_lot(
    batch_id: str, request: ConsumptionRequest, services: ServicesDep, user: Writer
) -> Consumption:
    """Book a quantity of a lot into a batch in progress."""
    return services.genealogy.consume(user, batch_id, request)


@router.get("/lots/{lot_id}/trace/forward")
async def trace_forward(lot_id: str, services: ServicesDep, _: Reader) -> Trace:
    """Which batches consumed the lot, and which product lots they yielded."""
    return await services.read(services.genealogy.forward, lot_id)


@router.get("/lots/{lot_id}/trace/backward")
async def trace_backward(lot_id: str, services: ServicesDep, _: Reader) -> Trace:
    """Which batch yielded the lot, and which lots went into it."""
    return await services.read(services.genealogy.backward, lot_id)
