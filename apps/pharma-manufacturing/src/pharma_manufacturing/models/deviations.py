"""Deviations from the batch record as they cross the API."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

Severity = Literal["minor", "major", "critical"]


class DeviationCreate(BaseModel):
    step_sequence: int | None = Field(default=None, ge=1)
    severity: Severity
    description: str = Field(min_length=1, max_length=4000)


class DeviationClose(BaseModel):
    resolution: str = Field(min_length=1, max_length=4000)


class Deviation(BaseModel):
    id: int
    batch_id: str
    step_sequence: int | None = None
    severity: Severity
    description: str
    status: Literal["open", "closed"]
    opened_by: str
    opened_at: datetime
    closed_by: str | None = None
    closed_at: datetime | None = None
    resolution: str | None = None
