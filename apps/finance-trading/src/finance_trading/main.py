"""The ASGI app (`finance_trading.main:app`) and `run`, which serves it, draining on exit.

What the engine relies on (readiness with a cached check, version, metrics, drill faults, the
drain on SIGTERM, JSON logs) comes from ops_kit (apps/ops-kit), wired here: the drain sequence
is described in ops_kit/serve.py. A start-up failure (such as the APP_FAULT_CRASH_ON_START
drill) makes uvicorn exit with code 3; a configuration the app cannot use stops `run` before it
listens, with exit code 1.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from ops_kit import operations as ops
from ops_kit.faults import crash_if_drilled, inject_faults
from ops_kit.lifecycle import Lifecycle
from ops_kit.logs import configure_logging
from ops_kit.readiness import ReadinessMonitor
from ops_kit.serve import serve

from finance_trading.api import operations, trading
from finance_trading.api.errors import install_error_handlers
from finance_trading.api.graphql_schema import graphql_router
from finance_trading.middleware.auth import ApiKeyMiddleware, ApiKeys
from finance_trading.middleware.request_id import RequestIdMiddleware
from finance_trading.services.ledger import DB_FILE, LedgerError, SqliteOrderLedger
from finance_trading.services.orders import OrderService
from finance_trading.settings import Settings
from finance_trading.trading_config import ConfigError

logger = logging.getLogger("finance_trading")
# The loggers of the readiness verdict and of the request lines keep the names they had.
readiness_logger = logging.getLogger("finance_trading.readiness")
telemetry_logger = logging.getLogger("finance_trading.middleware.telemetry")
LOGGED = ("account",)  # request-state fields a request's log line carries: the API key's account


def create_app(settings: Settings | None = None) -> FastAPI:
    """A fresh app with its own state and metrics registry; settings default to the environment.

    With `APP_DATA_DIR` it opens the shared idempotency ledger there (LedgerError if it
    cannot), closed when the app stops; without it, orders are idempotent in memory only.
    While the app runs, readiness also requires the ledger to answer a read (checked in the
    background, see ops_kit/readiness.py).
    """
    settings = settings or Settings.from_env()
    lifecycle = Lifecycle(ready_delay_s=settings.fault_ready_delay_s)
    ledger = SqliteOrderLedger.open(settings.data_dir) if settings.data_dir else None
    readiness = ReadinessMonitor(
        ledger.problem if ledger is not None else _nothing_to_check,
        subject="the order ledger",
        logger=readiness_logger,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        crash_if_drilled(settings.fault_crash_on_start, logger)
        # Probes read the verdict this keeps fresh, so that none of them touches the ledger;
        # it stops before the ledger is closed.
        async with readiness.running():
            lifecycle.mark_started()
            logger.info("started", extra={"fields": _describe(settings)})
            yield
        if ledger is not None:
            ledger.close()
        logger.info("stopped")

    app = FastAPI(title=settings.app_name, version=settings.version, lifespan=lifespan)
    app.state.orders = OrderService(settings.trading.limits, ledger=ledger)
    app.state.api_keys = ApiKeys(settings.trading.api_keys)
    app.state.drill_keys = ApiKeys(settings.trading.drill_keys)  # /drill/ only, see operations
    # The last added runs first: request id, then telemetry (added by ops.install; it sees
    # every answer, refusals included, and logs the key's account), then the API-key check,
    # then the routes. ops.install also adds /healthz/*, /version, /metrics and /drill/.
    app.add_middleware(ApiKeyMiddleware, keys=app.state.api_keys)
    ops.install(app, settings, lifecycle, readiness, operations.drills, telemetry_logger, LOGGED)
    app.add_middleware(RequestIdMiddleware)
    install_error_handlers(app)
    app.include_router(trading.router)
    app.include_router(graphql_router(), dependencies=[Depends(inject_faults)])
    return app


def run(host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve the app on host:port until a signal, then drain (see the module docstring).

    A configuration the app cannot use, or a ledger it cannot open, stops it before it
    listens: one `critical` log line naming the key, exit code 1.
    """
    configure_logging()
    try:
        settings = Settings.from_env()
        app = create_app(settings)
    except (ConfigError, LedgerError) as error:
        logger.critical(f"invalid configuration, not starting: {error}")
        raise SystemExit(1) from None
    # The app, its schemas and the imported frameworks live as long as the process: move them
    # out of the collector's sight, so that a full collection while serving orders takes
    # microseconds instead of the ~30 ms it takes to walk them all.
    gc.collect()
    gc.freeze()
    # uvloop (uvicorn's default, "auto"), unlike pharma-manufacturing: on a busy machine
    # asyncio's eager accept let bursts of new connections at each canary weight change queue
    # the canary's sampled requests, and the latency gate rolled back a healthy release (two
    # of five runs under four busy loops on two cores); with uvloop none in many more.
    # Its cost is slow accepts of a burst of new connections (bench/accept_burst.py),
    # which a canary's gradual ramp does not produce.
    serve(app, host, port, logger=logger, loop="auto")


def _nothing_to_check() -> str | None:
    """Readiness without a ledger: memory only, so nothing outside the process to wait for."""
    return None


def _describe(settings: Settings) -> dict[str, object]:
    return {
        "app": settings.app_name,
        "version": settings.version,
        "slot": settings.slot,
        "environment": settings.trading.environment,
        "config": str(settings.trading.source),
        "api_keys": len(settings.trading.api_keys),
        "drill_endpoint": settings.drill_endpoint,
        "drill_keys": len(settings.trading.drill_keys),
        "idempotency_ledger": str(settings.data_dir / DB_FILE) if settings.data_dir else "memory",
        "fault_error_rate": settings.fault_error_rate,
        "fault_latency_ms": settings.fault_latency_ms,
        "fault_ready_delay_s": settings.fault_ready_delay_s,
    }


def __getattr__(name: str) -> FastAPI:
    """`finance_trading.main:app` for an ASGI server, built from the environment on first use.

    Lazily, so that importing this module never reads configuration: `run` reports a bad
    value as one log line instead of an import-time traceback.
    """
    if name == "app":
        app = create_app()
        globals()["app"] = app
        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
