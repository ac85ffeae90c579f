"""Audit-trail entries as they cross the API."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel


class AuditEntry(BaseModel):
    id: int
    at: datetime
    user_id: str
    action: Literal["create", "update"]
    table_name: str
    record_id: str
    field: str | None = None
    old_value: str | None = None  # JSON text, as stored
    new_value: str | None = None
    reason: str | None = None
