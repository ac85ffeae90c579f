"""The drill endpoint's access check: only a signed-in QA user may call POST /drill/faults.

The operational endpoints themselves (liveness, readiness, metrics, version, the drill
endpoint) come from ops_kit.operations; what is pharma-manufacturing's own is who may run a
drill."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import Header, HTTPException, Request
from ops_kit.operations import drill_router
from starlette.concurrency import run_in_threadpool

from pharma_manufacturing.api.dependencies import authenticated_user
from pharma_manufacturing.services.credentials import User
from pharma_manufacturing.settings import Settings

# Drills break the app on purpose: the strongest role the app has (QA, which alone closes
# deviations and approves release) and no other.
DRILL_ROLES = ("qa",)

logger = logging.getLogger("pharma_manufacturing")


async def drill_access(
    request: Request,
    x_user: Annotated[str | None, Header()] = None,
    x_password: Annotated[str | None, Header()] = None,
    authorization: Annotated[str | None, Header()] = None,
) -> User:
    """Every /drill/ route: 404 unless APP_DRILL_ENDPOINT is on, as if the route did not
    exist; then a signed-in user (X-User + X-Password, or a bearer token from POST
    /api/session) with a role in DRILL_ROLES: else 401 NOT_AUTHENTICATED or 403 NOT_PERMITTED.
    Checked before the body is read: a refused call changes nothing. `open_reads` does not
    apply. Answers the user."""
    settings: Settings = request.app.state.settings
    if not settings.drill_endpoint:
        raise HTTPException(status_code=404, detail="Not Found")
    user: User = await run_in_threadpool(  # a password check (scrypt) must not block the loop
        authenticated_user, request, x_user, x_password, authorization
    )
    user.require_role(DRILL_ROLES, "run drills")
    return user


def _audit(user: User) -> dict[str, object]:
    """The "drill faults set" log line names the QA user."""
    return {"user": user.user_id}


# Every route of this router is a drill: the check above is on the router, not on each route.
drills = drill_router(drill_access, _audit, logger)
