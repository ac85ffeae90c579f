"""Lots, their consumption by batches, and traceability answers as they cross the API."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

LOT_ID = r"^[A-Z0-9][A-Z0-9-]{0,31}$"


class LotCreate(BaseModel):
    """A received material lot."""

    lot_id: str = Field(pattern=LOT_ID)
    material: str = Field(min_length=1, max_length=200)
    quantity: float = Field(gt=0)
    unit: str = Field(min_length=1, max_length=16)


class ProductLotRequest(BaseModel):
    """The lot a batch yields, booked when the batch is released."""

    lot_id: str = Field(pattern=LOT_ID)
    quantity: float = Field(gt=0)
    unit: str = Field(min_length=1, max_length=16)


class Lot(BaseModel):
    lot_id: str
    kind: Literal["material", "product"]
    material: str  # the material, or the product a product lot holds
    quantity: float
    unit: str
    produced_by_batch: str | None = None
    created_at: datetime
    created_by: str


class ConsumptionRequest(BaseModel):
    lot_id: str = Field(pattern=LOT_ID)
    quantity: float = Field(gt=0)


class Consumption(BaseModel):
    id: int
    batch_id: str
    lot_id: str
    quantity: float
    consumed_at: datetime
    consumed_by: str


class TracedLot(BaseModel):
    lot_id: str
    kind: Literal["material", "product"]
    material: str
    via_batch: str  # the batch that consumed it (backward) or produced it (forward)


class Trace(BaseModel):
    """Forward: which product lots came from this lot. Backward: which lots went into it."""

    lot_id: str
    direction: Literal["forward", "backward"]
    batches: list[str]
    lots: list[TracedLot]
