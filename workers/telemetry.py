"""What the worker exports for Prometheus: the engine's metrics and the Temporal SDK's.

Two endpoints, both `/metrics`: the engine's registry (zdp.metrics) on $ZDP_METRICS_ADDRESS
(default 127.0.0.1:9464) and the Temporal SDK's (its Rust core's own Prometheus exporter, on
the worker's Runtime) on $ZDP_TEMPORAL_METRICS_ADDRESS (default 127.0.0.1:9465). `off` turns
either off. An address that cannot be bound does not stop the worker (deployments matter more
than their metrics): the worker says so in one line, and its ready line names what it serves.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from prometheus_client import start_http_server
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from zdp.errors import ConfigError
from zdp.metrics import REGISTRY
from zdp.settings import settings

log = logging.getLogger("zdp.worker")


def parse_address(value: str, variable: str) -> tuple[str, int] | None:
    """host:port, or None for `off`; ConfigError naming the variable otherwise."""
    if value.strip().lower() in ("off", "none", ""):
        return None
    host, sep, port = value.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{variable}={value!r} is not host:port (or `off`)")
    return host, int(port)


@dataclass
class Telemetry:
    """What the worker serves, as URLs for its ready line and `zdp up --status`."""

    runtime: Runtime | None = None
    metrics_url: str | None = None
    temporal_metrics_url: str | None = None
    problems: tuple[str, ...] = ()

    def describe(self) -> str:
        served = [
            f"engine metrics {self.metrics_url}" if self.metrics_url else "no engine metrics",
            f"Temporal SDK metrics {self.temporal_metrics_url}"
            if self.temporal_metrics_url
            else "no Temporal SDK metrics",
        ]
        return ", ".join(served)


def start_telemetry() -> Telemetry:
    """Serve the engine's metrics and build a Runtime that serves the SDK's (per settings)."""
    found = settings()
    engine = parse_address(found.METRICS_ADDRESS, "ZDP_METRICS_ADDRESS")
    sdk = parse_address(found.TEMPORAL_METRICS_ADDRESS, "ZDP_TEMPORAL_METRICS_ADDRESS")
    telemetry = Telemetry()
    problems: list[str] = []
    if engine is not None:
        host, port = engine
        try:
            start_http_server(port, addr=host, registry=REGISTRY)
            telemetry.metrics_url = f"http://{host}:{port}/metrics"
        except OSError as err:
            problems.append(f"engine metrics not served: {host}:{port}: {err.strerror or err}")
    if sdk is not None:
        host, port = sdk
        try:
            telemetry.runtime = Runtime(
                telemetry=TelemetryConfig(
                    metrics=PrometheusConfig(
                        bind_address=f"{host}:{port}",
                        counters_total_suffix=True,
                        durations_as_seconds=True,
                    )
                )
            )
            telemetry.temporal_metrics_url = f"http://{host}:{port}/metrics"
        except Exception as err:  # the core's error for a port in use is a plain RuntimeError
            problems.append(f"Temporal SDK metrics not served: {host}:{port}: {err}")
    telemetry.problems = tuple(problems)
    for problem in problems:
        log.warning("%s", problem)
    return telemetry
