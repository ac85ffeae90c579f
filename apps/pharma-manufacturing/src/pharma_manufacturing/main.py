"""The ASGI app (`pharma_manufacturing.main:app`) and `run`, which serves it, draining on exit.

Drain sequence on SIGTERM (or SIGINT), as run by `python -m pharma_manufacturing`:

1. The signal handler marks the app draining at once: `/healthz/ready` answers 503
   `{"status": "draining"}` while the listener still accepts, so the proxy and the engine's
   probes see the change before any connection is refused.
2. After `APP_DRAIN_DELAY_S` (default 0.5 s) uvicorn is asked to exit: it closes the listener,
   closes idle keep-alive connections and waits up to `APP_DRAIN_TIMEOUT_S` (default 30 s)
   for in-flight requests to finish.
3. The lifespan shutdown runs and the process exits 0. A second signal skips the delay; a
   third stops without waiting for in-flight requests.

A start-up failure (the APP_FAULT_CRASH_ON_START drill, or a database that cannot be reached)
makes uvicorn exit with code 3; a configuration error exits 1 with one log line naming it.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import FrameType
from typing import Any

import uvicorn
from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from sqlalchemy.exc import SQLAlchemyError

from pharma_manufacturing.api import batches, deviations, line, lots, operations, session
from pharma_manufacturing.api.dependencies import Services
from pharma_manufacturing.api.errors import record_error_response
from pharma_manufacturing.lifecycle import Lifecycle
from pharma_manufacturing.logs import configure_logging
from pharma_manufacturing.middleware.faults import FaultInjector
from pharma_manufacturing.middleware.telemetry import RequestMetrics, TelemetryMiddleware
from pharma_manufacturing.readiness import ReadinessMonitor
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


class InjectedStartupCrash(RuntimeError):
    """The APP_FAULT_CRASH_ON_START drill: startup fails on purpose."""


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
    readiness = ReadinessMonitor(DatabaseReadiness(database, gate).check, subject="the database")

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if settings.fault_crash_on_start:
            logger.critical(
                "injected fault APP_FAULT_CRASH_ON_START: failing startup, the process exits 3"
            )
            raise InjectedStartupCrash("APP_FAULT_CRASH_ON_START is set")
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
    registry = CollectorRegistry()
    app.state.settings = settings
    app.state.lifecycle = lifecycle
    app.state.registry = registry
    app.state.faults = FaultInjector(settings.fault_error_rate, settings.fault_latency_ms)
    app.state.database = database
    app.state.readiness = readiness
    app.state.services = Services(
        database=database,
        users=users,
        batches=records,
        steps=StepRecords(database, users, seal),
        release=BatchRelease(database, users, seal, records),
        deviations=DeviationRecords(database),
        genealogy=Genealogy(database),
    )
    app.add_middleware(TelemetryMiddleware, metrics=RequestMetrics(registry))
    app.add_exception_handler(RecordError, record_error_response)
    for module in (operations, batches, deviations, lots, line, session):
        app.include_router(module.router)
    app.include_router(operations.drills)
    return app


class DrainingServer(uvicorn.Server):
    """uvicorn.Server whose signal handler reports draining before it stops accepting."""

    def __init__(self, config: uvicorn.Config, lifecycle: Lifecycle, drain_delay_s: float):
        super().__init__(config)
        self._lifecycle = lifecycle
        self._drain_delay_s = drain_delay_s

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Deliberately not calling super(): it records the signal and re-raises it after
        # shutdown, which would end a clean drain with "killed by SIGTERM" instead of 0.
        if not self._lifecycle.draining:
            self._lifecycle.start_draining()
            name = signal.Signals(sig).name
            logger.info(
                "draining", extra={"fields": {"signal": name, "delay_s": self._drain_delay_s}}
            )
            timer = threading.Timer(self._drain_delay_s, self._stop_accepting)
            timer.daemon = True
            timer.start()
        elif not self.should_exit:
            self.should_exit = True
        else:
            self.force_exit = True

    def _stop_accepting(self) -> None:
        self.should_exit = True  # uvicorn's main loop checks this every 0.1 s


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
    settings: Settings = application.state.settings
    config = uvicorn.Config(
        application,
        host=host,
        port=port,
        lifespan="on",  # a failed startup must stop the process, not be ignored
        # asyncio's loop, not uvloop: libuv (>= 1.45) accepts one connection per loop iteration,
        # so when the loop is busy, new connections wait in the listen queue for seconds while
        # requests on established ones are served in milliseconds. Envoy opens new upstream
        # connections exactly then (a blue-green switch to a colour it has no connections to,
        # or any slowdown), and those requests time out. asyncio accepts the whole queue at once.
        loop="asyncio",
        log_config=None,  # keep the JSON handler configure_logging installed
        access_log=False,  # TelemetryMiddleware logs each request
        timeout_graceful_shutdown=max(1, round(settings.drain_timeout_s)),
    )
    DrainingServer(config, application.state.lifecycle, settings.drain_delay_s).run()


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
