"""Operational endpoints the engine and the proxy read: liveness, readiness, metrics, version;
and the drill endpoint, which only a signed-in QA user may call."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from pharma_manufacturing.api.dependencies import authenticated_user
from pharma_manufacturing.lifecycle import Lifecycle
from pharma_manufacturing.middleware.faults import READY_FAIL_REASON, FaultInjector
from pharma_manufacturing.readiness import ReadinessMonitor
from pharma_manufacturing.services.credentials import User
from pharma_manufacturing.settings import Settings

# Drills break the app on purpose: the strongest role the app has (QA, which alone closes
# deviations and approves release) and no other.
DRILL_ROLES = ("qa",)

logger = logging.getLogger("pharma_manufacturing")
router = APIRouter(tags=["operations"])


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


# Every route of this router is a drill: the check above is on the router, not on each route.
drills = APIRouter(prefix="/drill", tags=["drills"], dependencies=[Depends(drill_access)])


@router.get("/healthz/live")
async def live() -> dict[str, str]:
    return {"status": "live"}


@router.get("/healthz/ready")
async def ready(request: Request) -> JSONResponse:
    """200 ready; 503 starting or draining; 503 not_ready with the reason when the database
    does not answer or its schema does not fit this version, or during the ready_fail drill.

    Probes come every 50 ms with a 50 ms timeout: this reads state only. The database verdict
    is the one the background refresher stored (at most about a second old, see readiness.py);
    starting and draining come straight from the lifecycle, so draining shows at once.
    """
    state = request.app.state
    lifecycle: Lifecycle = state.lifecycle
    readiness = lifecycle.readiness
    if readiness != "ready":
        return JSONResponse({"status": readiness}, status_code=503)
    faults: FaultInjector = state.faults
    monitor: ReadinessMonitor = state.readiness
    reason = READY_FAIL_REASON if faults.ready_fail else monitor.problem()
    if reason is not None:
        return JSONResponse({"status": "not_ready", "reason": reason}, status_code=503)
    return JSONResponse({"status": "ready"})


@router.get("/version")
async def version(request: Request) -> dict[str, Any]:
    settings: Settings = request.app.state.settings
    return {"app": settings.app_name, "version": settings.version, "slot": settings.slot}


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.registry), media_type=CONTENT_TYPE_LATEST)


@drills.post("/faults")
async def set_drill_faults(
    request: Request, user: Annotated[User, Depends(drill_access)]
) -> dict[str, Any]:
    """Drills only: set the injected faults of a RUNNING process (error rate, latency, and
    `ready_fail`: readiness answers 503 while the API keeps working). Each call sets all three;
    a field left out goes back to none. The answer echoes what is now set.

    Disabled unless the process was started with APP_DRILL_ENDPOINT=1 (a release's config
    override `DRILL_ENDPOINT=1`): then 404, as if the route did not exist. Enabled, it needs a
    QA user's credentials (see drill_access).
    """
    body = await request.json()
    if not isinstance(body, dict):
        raise HTTPException(status_code=422, detail="the body must be a JSON object")
    try:
        error_rate = float(body.get("error_rate", 0.0))
        latency_ms = int(body.get("latency_ms", 0))
    except (TypeError, ValueError):
        raise HTTPException(
            status_code=422, detail="error_rate and latency_ms must be numbers"
        ) from None
    if not 0.0 <= error_rate <= 1.0 or latency_ms < 0:
        raise HTTPException(status_code=422, detail="error_rate in [0, 1], latency_ms >= 0")
    ready_fail = body.get("ready_fail", False)
    if not isinstance(ready_fail, bool):  # bool("false") is True: accept JSON booleans only
        raise HTTPException(status_code=422, detail="ready_fail must be true or false")
    request.app.state.faults = FaultInjector(error_rate, latency_ms, ready_fail)
    faults = {"error_rate": error_rate, "latency_ms": latency_ms, "ready_fail": ready_fail}
    logger.warning("drill faults set", extra={"fields": {"user": user.user_id, **faults}})
    return faults
