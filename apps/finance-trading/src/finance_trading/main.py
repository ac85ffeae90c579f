"""The ASGI app (`finance_trading.main:app`) and `run`, which serves it, draining on exit.

Drain sequence on SIGTERM (or SIGINT), as run by `python -m finance_trading`:

1. The signal handler marks the app draining at once: `/healthz/ready` answers 503
   `{"status": "draining"}` while the listener still accepts, so the proxy and the engine's
   probes see the change before any connection is refused.
2. After `APP_DRAIN_DELAY_S` (default 0.5 s) uvicorn is asked to exit: it closes the listener,
   closes idle keep-alive connections and waits up to `APP_DRAIN_TIMEOUT_S` (default 30 s)
   for in-flight requests to finish.
3. The lifespan shutdown runs and the process exits 0. A second signal skips the delay; a
   third stops without waiting for in-flight requests.

A start-up failure (such as the APP_FAULT_CRASH_ON_START drill) makes uvicorn exit with code 3;
a configuration the app cannot use stops `run` before it listens, with exit code 1.
"""

from __future__ import annotations

import gc
import logging
import signal
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import FrameType

import uvicorn
from fastapi import Depends, FastAPI
from prometheus_client import CollectorRegistry

from finance_trading.api import operations, trading
from finance_trading.api.errors import install_error_handlers
from finance_trading.api.graphql_schema import graphql_router
from finance_trading.lifecycle import Lifecycle
from finance_trading.logs import configure_logging
from finance_trading.middleware.auth import ApiKeyMiddleware, ApiKeys
from finance_trading.middleware.faults import FaultInjector, inject_faults
from finance_trading.middleware.request_id import RequestIdMiddleware
from finance_trading.middleware.telemetry import RequestMetrics, TelemetryMiddleware
from finance_trading.readiness import ReadinessMonitor
from finance_trading.services.ledger import DB_FILE, LedgerError, SqliteOrderLedger
from finance_trading.services.orders import OrderService
from finance_trading.settings import Settings
from finance_trading.trading_config import ConfigError

logger = logging.getLogger("finance_trading")


class InjectedStartupCrash(RuntimeError):
    """The APP_FAULT_CRASH_ON_START drill: startup fails on purpose."""


def create_app(settings: Settings | None = None) -> FastAPI:
    """A fresh app with its own state and metrics registry; settings default to the environment.

    With `APP_DATA_DIR` it opens the shared idempotency ledger there (LedgerError if it
    cannot), closed when the app stops; without it, orders are idempotent in memory only.
    While the app runs, readiness also requires the ledger to answer a read (checked in the
    background, see readiness.py).
    """
    settings = settings or Settings.from_env()
    lifecycle = Lifecycle(ready_delay_s=settings.fault_ready_delay_s)
    ledger = SqliteOrderLedger.open(settings.data_dir) if settings.data_dir else None
    readiness = ReadinessMonitor(
        ledger.problem if ledger is not None else _nothing_to_check, subject="the order ledger"
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if settings.fault_crash_on_start:
            logger.critical(
                "injected fault APP_FAULT_CRASH_ON_START: failing startup, the process exits 3"
            )
            raise InjectedStartupCrash("APP_FAULT_CRASH_ON_START is set")
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
    registry = CollectorRegistry()
    app.state.settings = settings
    app.state.lifecycle = lifecycle
    app.state.readiness = readiness
    app.state.registry = registry
    app.state.faults = FaultInjector(settings.fault_error_rate, settings.fault_latency_ms)
    app.state.orders = OrderService(settings.trading.limits, ledger=ledger)
    app.state.api_keys = ApiKeys(settings.trading.api_keys)
    app.state.drill_keys = ApiKeys(settings.trading.drill_keys)  # /drill/ only, see operations
    # The last added runs first: request id, then telemetry (which sees every answer,
    # refusals included), then the API-key check, then the routes.
    app.add_middleware(ApiKeyMiddleware, keys=app.state.api_keys)
    app.add_middleware(TelemetryMiddleware, metrics=RequestMetrics(registry))
    app.add_middleware(RequestIdMiddleware)
    install_error_handlers(app)
    app.include_router(operations.router)
    app.include_router(operations.drills)
    app.include_router(trading.router)
    app.include_router(graphql_router(), dependencies=[Depends(inject_faults)])
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
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        lifespan="on",  # a failed startup must stop the process, not be ignored
        # uvloop (uvicorn's default), unlike pharma-manufacturing: on a busy machine asyncio's
        # eager accept let bursts of new connections at each canary weight change queue the
        # canary's sampled requests, and the latency gate rolled back a healthy release (two
        # of five runs under four busy loops on two cores); with uvloop none in many more.
        # Its cost is slow accepts of a burst of new connections (bench/accept_burst.py),
        # which a canary's gradual ramp does not produce.
        log_config=None,  # keep the JSON handler configure_logging installed
        access_log=False,  # TelemetryMiddleware logs each request
        timeout_graceful_shutdown=max(1, round(settings.drain_timeout_s)),
    )
    DrainingServer(config, app.state.lifecycle, settings.drain_delay_s).run()


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
