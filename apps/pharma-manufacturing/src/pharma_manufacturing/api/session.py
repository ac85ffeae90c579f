"""POST /api/session: trade a user id and password for a bearer token (one shift long)."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Depends
from ops_kit.faults import inject_faults

from pharma_manufacturing.api.dependencies import ServicesDep
from pharma_manufacturing.models.session import Session, SessionRequest

router = APIRouter(prefix="/api", tags=["session"], dependencies=[Depends(inject_faults)])


@router.post("/session", status_code=201)
def open_session(request: SessionRequest, services: ServicesDep) -> Session:
    """A token for `Authorization: Bearer`; signing still asks for the password every time."""
    user = services.users.authenticate(request.user_id, request.password)
    token, expires = services.users.issue_token(user)
    return Session(
        token=token,
        user_id=user.user_id,
        printed_name=user.printed_name,
        expires_at=datetime.fromtimestamp(expires, UTC),
    )
