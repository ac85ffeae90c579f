"""Sign-in: a session token for the `Authorization: Bearer` header."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class SessionRequest(BaseModel):
    user_id: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256, repr=False)


class Session(BaseModel):
    token: str  # send as `Authorization: Bearer <token>`
    user_id: str
    printed_name: str
    expires_at: datetime
