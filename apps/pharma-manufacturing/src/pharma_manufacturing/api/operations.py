"""Operational endpoints the engine and the proxy read: liveness, readiness, metrics, version."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pharma_manufacturing.lifecycle import Lifecycle
from pharma_manufacturing.settings import Settings

router = APIRouter(tags=["operations"])


@router.get("/healthz/live")
async def live() -> dict[str, str]:
    return {"status": "live"}


@router.get("/healthz/ready")
async def ready(request: Request) -> JSONResponse:
    lifecycle: Lifecycle = request.app.state.lifecycle
    readiness = lifecycle.readiness
    return JSONResponse({"status": readiness}, status_code=200 if readiness == "ready" else 503)


@router.get("/version")
async def version(request: Request) -> dict[str, Any]:
    settings: Settings = request.app.state.settings
    return {"app": settings.app_name, "version": settings.version, "slot": settings.slot}


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.registry), media_type=CONTENT_TYPE_LATEST)
