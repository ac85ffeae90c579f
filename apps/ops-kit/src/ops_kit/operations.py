"""The endpoints the engine and the proxy read, and the drill endpoint; `install` wires them.

- `GET /healthz/live`: 200 `{"status": "live"}` while the process runs.
- `GET /healthz/ready`: 200 `{"status": "ready"}`; 503 `{"status": "starting"}` or
  `{"status": "draining"}` (the lifecycle), or `{"status": "not_ready", "reason": ...}` (the
  `ready_fail` drill, else the cached verdict of the app's readiness check).
- `GET /version`: `{"app": ..., "version": ..., "slot": ...}` from the app's settings.
- `GET /metrics`: the app's Prometheus registry.
- `POST /drill/faults` (`drill_router`): sets the faults of a running process, behind the
  app's own access check.

They read `app.state`: `settings` (a `DrillSettings` with `app_name`, `version`, `slot`),
`lifecycle`, `readiness`, `faults` and `registry`, which `install` sets.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol, cast

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from ops_kit import tracing
from ops_kit.faults import READY_FAIL_REASON, FaultInjector
from ops_kit.lifecycle import Lifecycle
from ops_kit.readiness import ReadinessMonitor
from ops_kit.settings import DrillSettings
from ops_kit.telemetry import RequestMetrics, TelemetryMiddleware

router = APIRouter(tags=["operations"])


class AppSettings(Protocol):
    """What the kit reads of an app's settings besides `DrillSettings`' fields."""

    @property
    def app_name(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def slot(self) -> str | None: ...


@router.get("/healthz/live")
async def live() -> dict[str, str]:
    return {"status": "live"}


@router.get("/healthz/ready")
async def ready(request: Request) -> JSONResponse:
    """200 ready; 503 starting or draining; 503 not_ready with the reason when the app's
    readiness check fails, or during the ready_fail drill.

    Probes come every 50 ms with a 50 ms timeout: this reads state only. The check's verdict is
    the one the background refresher stored (at most about a second old, see readiness.py);
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
    settings: AppSettings = request.app.state.settings
    return {"app": settings.app_name, "version": settings.version, "slot": settings.slot}


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.registry), media_type=CONTENT_TYPE_LATEST)


def drill_router(
    access: Callable[..., Any],
    audit: Callable[[Any], dict[str, object]],
    logger: logging.Logger,
) -> APIRouter:
    """The /drill/ routes, every one behind `access`, the app's own dependency.

    `access` raises 404 unless APP_DRILL_ENDPOINT is on (as if the route did not exist), then
    401/403 unless the caller holds the app's most privileged credential; it is checked before
    the body is read, so a refused call changes nothing. It answers the caller, which
    `audit(caller)` turns into the fields of the "drill faults set" log line.
    """
    checked = Depends(access)  # FastAPI runs it once a request: the router's and the route's
    drills = APIRouter(prefix="/drill", tags=["drills"], dependencies=[checked])

    @drills.post("/faults")
    async def set_drill_faults(request: Request, caller: Any = checked) -> dict[str, Any]:
        """Drills only: set the injected faults of a RUNNING process (error rate, latency, and
        `ready_fail`: readiness answers 503 while the API keeps working). Each call sets all
        three; a field left out goes back to none. The answer echoes what is now set.

        Disabled unless the process was started with APP_DRILL_ENDPOINT=1 (a release's config
        override `DRILL_ENDPOINT=1`): then 404, as if the route did not exist. Enabled, it needs
        the app's drill credential (see the app's drill_access).
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
        logger.warning("drill faults set", extra={"fields": {**audit(caller), **faults}})
        return faults

    return drills


def install(
    app: FastAPI,
    settings: DrillSettings,
    lifecycle: Lifecycle,
    readiness: ReadinessMonitor,
    drills: APIRouter,
    telemetry_logger: logging.Logger,
    log_state_fields: tuple[str, ...] = (),
) -> None:
    """Give `app` the state the endpoints read (`settings`, `lifecycle`, `readiness`, `faults`,
    `registry`), the metrics and request-log middleware, the tracing middleware (tracing.py,
    when OpenTelemetry is installed), the operational routes and `drills` (from `drill_router`).

    The telemetry middleware is added here: a middleware the app adds before this call runs
    inside it (its refusals are counted), one added after runs outside it.
    """
    registry = CollectorRegistry()
    app.state.settings = settings
    app.state.lifecycle = lifecycle
    app.state.readiness = readiness
    app.state.registry = registry
    app.state.faults = FaultInjector(settings.fault_error_rate, settings.fault_latency_ms)
    app.add_middleware(
        TelemetryMiddleware,
        metrics=RequestMetrics(registry),
        state_fields=log_state_fields,
        logger=telemetry_logger,
    )
    # After telemetry, so outside it: the request's span is current while its line is logged.
    named = cast(AppSettings, settings)  # an app's settings name the app (AppSettings)
    tracing.instrument(app, named.app_name, named.version, named.slot)
    app.include_router(router)
    app.include_router(drills)
