"""Serving an app with uvicorn so that SIGTERM drains it; the `python -m <pkg>` arguments.

Drain sequence on SIGTERM (or SIGINT):

1. The signal handler marks the app draining at once: `/healthz/ready` answers 503
   `{"status": "draining"}` while the listener still accepts, so the proxy and the engine's
   probes see the change before any connection is refused.
2. After `APP_DRAIN_DELAY_S` (default 0.5 s) uvicorn is asked to exit: it closes the listener,
   closes idle keep-alive connections and waits up to `APP_DRAIN_TIMEOUT_S` (default 30 s)
   for in-flight requests to finish.
3. The lifespan shutdown runs and the process exits 0. A second signal skips the delay; a
   third stops without waiting for in-flight requests.

A start-up failure (such as the APP_FAULT_CRASH_ON_START drill) makes uvicorn exit with code 3.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from types import FrameType
from typing import Literal

import uvicorn
from fastapi import FastAPI

from ops_kit.lifecycle import Lifecycle
from ops_kit.settings import DrillSettings

Loop = Literal["auto", "asyncio", "uvloop"]  # uvicorn's event loop choices


class DrainingServer(uvicorn.Server):
    """uvicorn.Server whose signal handler reports draining before it stops accepting."""

    def __init__(
        self,
        config: uvicorn.Config,
        lifecycle: Lifecycle,
        drain_delay_s: float,
        logger: logging.Logger,
    ):
        super().__init__(config)
        self._lifecycle = lifecycle
        self._drain_delay_s = drain_delay_s
        self._logger = logger

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Deliberately not calling super(): it records the signal and re-raises it after
        # shutdown, which would end a clean drain with "killed by SIGTERM" instead of 0.
        if not self._lifecycle.draining:
            self._lifecycle.start_draining()
            name = signal.Signals(sig).name
            self._logger.info(
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


def serve(
    app: FastAPI, host: str, port: int, *, logger: logging.Logger, loop: Loop = "auto"
) -> None:
    """Serve `app` (set up by `operations.install`) on host:port until a signal, then drain.

    Logging stays as `logs.configure_logging` set it (uvicorn's own config and access log are
    off: the telemetry middleware logs each request). `loop` is uvicorn's: "auto" is uvloop
    when installed, "asyncio" the standard library's.
    """
    settings: DrillSettings = app.state.settings
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        lifespan="on",  # a failed startup must stop the process, not be ignored
        loop=loop,
        log_config=None,  # keep the JSON handler configure_logging installed
        access_log=False,  # TelemetryMiddleware logs each request
        timeout_graceful_shutdown=max(1, round(settings.drain_timeout_s)),
    )
    DrainingServer(config, app.state.lifecycle, settings.drain_delay_s, logger).run()


def parse_args(
    package: str, description: str | None, argv: list[str] | None = None
) -> argparse.Namespace:
    """The arguments of `python -m <package> --host 127.0.0.1 --port 8000`, as the engine's
    local runtime (and the images) start an app."""
    parser = argparse.ArgumentParser(prog=f"python -m {package}", description=description)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port to bind (default 8000)")
    return parser.parse_args(argv)
