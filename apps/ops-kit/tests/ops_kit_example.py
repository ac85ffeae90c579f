"""The smallest app built with ops_kit, as a team would wire it; the kit's tests run the
operations contract against it (in process and as `python -m ops_kit_example`).

A business route with the drill faults (`GET /api/items/{item_id}`), a readiness check (here:
nothing outside the process, so always ready), a drill endpoint behind a drill key
(`X-Drill-Key`), settings from the environment, JSON logs, drain on SIGTERM.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Request
from ops_kit import operations as ops
from ops_kit.faults import crash_if_drilled, inject_faults
from ops_kit.lifecycle import Lifecycle
from ops_kit.logs import configure_logging
from ops_kit.readiness import ReadinessMonitor
from ops_kit.serve import parse_args, serve
from ops_kit.settings import (
    DrillSettings,
    check_error_rate,
    drill_fields,
    refuse_drills_in_production,
)

DRILL_KEY = "example-drill-key"
logger = logging.getLogger("ops_kit_example")


@dataclass(frozen=True, kw_only=True)
class Settings(DrillSettings):
    app_name: str = "ops-kit-example"
    version: str = "1.0.0"
    slot: str | None = None
    environment: str = "local"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        def number(name: str, default: float) -> float:
            raw = env.get(name, "").strip()
            return float(raw) if raw else default

        settings = cls(
            version=env.get("APP_VERSION") or "1.0.0",
            slot=env.get("APP_SLOT") or None,
            environment=env.get("APP_ENV") or "local",
            **drill_fields(env, number),
            drain_delay_s=number("APP_DRAIN_DELAY_S", 0.5),
            drain_timeout_s=number("APP_DRAIN_TIMEOUT_S", 30.0),
        )
        check_error_rate(settings, ValueError)
        refuse_drills_in_production(settings, settings.environment, ValueError)
        return settings


async def drill_access(
    request: Request, x_drill_key: Annotated[str | None, Header()] = None
) -> str:
    """404 unless APP_DRILL_ENDPOINT is on; then the drill key, else 401."""
    if not request.app.state.settings.drill_endpoint:
        raise HTTPException(status_code=404, detail="Not Found")
    if x_drill_key != DRILL_KEY:
        raise HTTPException(status_code=401, detail="a drill key is needed")
    return "example-drill"


api = APIRouter(prefix="/api", dependencies=[Depends(inject_faults)])


@api.get("/items/{item_id}")
async def item(item_id: str) -> dict[str, str]:
    return {"item": item_id}


def create_app(settings: Settings) -> FastAPI:
    lifecycle = Lifecycle(ready_delay_s=settings.fault_ready_delay_s)
    readiness = ReadinessMonitor(lambda: None, subject="nothing")

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        crash_if_drilled(settings.fault_crash_on_start, logger)
        async with readiness.running():
            lifecycle.mark_started()
            logger.info("started")
            yield
        logger.info("stopped")

    app = FastAPI(lifespan=lifespan)
    drills = ops.drill_router(drill_access, lambda holder: {"drill_key": holder}, logger)
    ops.install(app, settings, lifecycle, readiness, drills, telemetry_logger=logger)
    app.include_router(api)
    return app


if __name__ == "__main__":
    args = parse_args("ops_kit_example", __doc__)
    configure_logging()
    serve(create_app(Settings.from_env(os.environ)), args.host, args.port, logger=logger)
