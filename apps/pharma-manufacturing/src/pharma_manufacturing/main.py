"""The ASGI app (`pharma_manufacturing.main:app`) and `run`, which serves it, draining on exit.

What the engine relies on (readiness with a cached check, version, metrics, drill faults, the
drain on SIGTERM, JSON logs) comes from ops_kit (apps/ops-kit), wired here: the drain sequence
is described in ops_kit/serve.py. A start-up failure (the APP_FAULT_CRASH_ON_START drill, or a
database that cannot be reached) makes uvicorn exit with code 3; a configuration error exits 1
with one log line naming it.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from ops_kit import operations as ops
from ops_kit.faults import crash_if_drilled
from ops_kit.lifecycle import Lifecycle
from ops_kit.logs import configure_logging
from ops_kit.readiness import ReadinessMonitor
from ops_kit.serve import serve
from sqlalchemy.exc import SQLAlchemyError

from pharma_manufacturing.api import batches, deviations, line, lots, operations, session
from pharma_manufacturing.api.dependencies import Services
from pharma_manufacturing.api.errors import record_error_response
from pharma_manufacturing.services.batches import BatchRecords
from pharma_manufacturing.services.credentials import UserDirectory
from pharma_manufacturing.services.deviations import DeviationRecords
from pharma_manufacturing.services.errors import RecordError
from pharma_manufacturing.services.genealogy import Genealogy
from pharma_manufacturing.services.release import BatchRelease
from pharma_manufacturing.services.signatures import SignatureSeal
from pharma_manufacturing.services.steps import StepRecords
from pharma_manufacturing.settings import Settings, SettingsError
from pharma_manufacturing.startup import DatabaseUnavailableError, prepare_database
from pharma_manufacturing.storage.database import Database
from pharma_manufacturing.storage.readiness import DatabaseReadiness
from pharma_manufacturing.storage.schema import SchemaGate

logger = logging.getLogger("pharma_manufacturing")
# The loggers of the readiness verdict and of the request lines keep the names they had.
readiness_logger = logging.getLogger("pharma_manufacturing.readiness")
telemetry_logger = logging.getLogger("pharma_manufacturing.middleware.telemetry")


def create_app(settings: Settings | None = None) -> FastAPI:
    """A fresh app with its own state and metrics registry; settings default to the environment.

    Nothing touches the database here: the lifespan migrates, checks and seeds at start-up,
    keeps the readiness verdict refreshed while the app runs, and closes the engine on shutdown.
    """
    settings = settings or Settings.from_env()
    lifecycle = Lifecycle(ready_delay_s=settings.fault_ready_delay_s)
    database = Database(settings.database_url, settings.busy_timeout_ms)
    gate = SchemaGate()
    seal = SignatureSeal(settings.signing_key)
    users = UserDirectory(settings.users, settings.signing_key)
    records = BatchRecords(database, seal)
    readiness = ReadinessMonitor(
        DatabaseReadiness(database, gate).check, subject="the database", logger=readiness_logger
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        crash_if_drilled(settings.fault_crash_on_start, logger)
        try:
            await asyncio.to_thread(prepare_database, settings, database, gate, seal)
        except SQLAlchemyError as error:
            database.dispose()
            cause = " ".join(str(getattr(error, "orig", None) or error).split())
            logger.critical(
                f"database unavailable at start-up ({database.describe()}): {cause}; "
                "the process exits 3"
            )
            raise DatabaseUnavailableError(cause) from None
        try:
            # Probes read the verdict this keeps fresh, so that none of them queries the
            # database; it stops before the engine is disposed.
            async with readiness.running():
                lifecycle.mark_started()
                logger.info("started", extra={"fields": _describe(settings, database)})
                yield
        finally:
            database.dispose()
            logger.info("stopped")

    app = FastAPI(title=settings.app_name, version=settings.version, lifespan=lifespan)
    app.state.database = database
    app.state.services = Services(
        database=database,
        users=users,
        batches=records,
        steps=StepRecords(database, users, seal),
        release=BatchRelease(database, users, seal, records),
        deviations=DeviationRecords(database),
        genealogy=Genealogy(database),
    )
    # /healthz/*, /version, /metrics, /drill/ and the metrics and request-log middleware.
    ops.install(app, settings, lifecycle, readiness, operations.drills, telemetry_logger)
    app.add_exception_handler(RecordError, record_error_response)
    for module in (batches, deviations, lots, line, session):
        app.include_router(module.router)
    return app


def run(host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve the app on host:port until a signal, then drain (see the module docstring).

    A setting the app cannot use stops it here with one log line naming it, and exit code 1.
    """
    configure_logging()
    try:
        application = create_app()
    except SettingsError as error:
        logger.critical(f"configuration error: {error}")
        sys.exit(1)
    # asyncio's loop, not uvloop: libuv (>= 1.45) accepts one connection per loop iteration,
    # so when the loop is busy, new connections wait in the listen queue for seconds while
    # requests on established ones are served in milliseconds. Envoy opens new upstream
    # connections exactly then (a blue-green switch to a colour it has no connections to,
    # or any slowdown), and those requests time out. asyncio accepts the whole queue at once.
    serve(application, host, port, logger=logger, loop="asyncio")


def _describe(settings: Settings, database: Database) -> dict[str, object]:
    return {
        "app": settings.app_name,
        "version": settings.version,
        "slot": settings.slot,
        "environment": settings.environment,
        "config_file": settings.config_file,
        "database": database.describe(),
        "migrate_on_start": settings.migrate_on_start,
        "fault_error_rate": settings.fault_error_rate,
        "fault_latency_ms": settings.fault_latency_ms,
        "fault_ready_delay_s": settings.fault_ready_delay_s,
    }


_app: FastAPI | None = None


def __getattr__(name: str) -> Any:
    """`pharma_manufacturing.main:app`, built on first use (so that importing this module for
    `run` or for tests does not read the environment)."""
    global _app
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if _app is None:
        _app = create_app()
    return _app
