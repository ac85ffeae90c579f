"""GET /api/line/status: the batches in progress, which the engine reads before a deploy."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from ops_kit.faults import inject_faults

from pharma_manufacturing.api.dependencies import ServicesDep
from pharma_manufacturing.models.batches import LineStatus

router = APIRouter(prefix="/api/line", tags=["line"], dependencies=[Depends(inject_faults)])


@router.get("/status")
async def line_status(services: ServicesDep) -> LineStatus:
    """Open and read-only: every batch whose status is in progress, from the database."""
    return await services.read(services.batches.line_status)
