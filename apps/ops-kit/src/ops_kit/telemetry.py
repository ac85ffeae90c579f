"""Request metrics (count by path/method/status, latency histogram) and a log line per request."""

from __future__ import annotations

import logging
import time

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger(__name__)

UNMATCHED = "<unmatched>"  # path label for requests no route matched, to bound label cardinality
# Health probes arrive every 50 ms from each gate and the proxy: counted and timed like any
# request, but not logged, since a JSON line each would cost more than the probe itself and
# bury the requests that matter. Readiness changes are logged once, by readiness.py.
UNLOGGED_PATHS = frozenset({"/healthz/live", "/healthz/ready"})


class RequestMetrics:
    """The app's Prometheus series, registered in the app's own registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "http_requests_total",
            "HTTP requests served, by route template, method and status code.",
            ["path", "method", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "Time to serve an HTTP request, by route template and method.",
            ["path", "method"],
            registry=registry,
        )


class TelemetryMiddleware:
    """Pure ASGI middleware: labels by route template (`/api/x/{id}`), not by raw path.

    `state_fields` names request-state values (`scope["state"]`, set by an inner middleware:
    finance-trading's API-key check sets `account`) that a request's log line carries when set.
    `logger` is the one the request lines go to (the app's, so they keep its logger name).
    """

    def __init__(
        self,
        app: ASGIApp,
        metrics: RequestMetrics,
        state_fields: tuple[str, ...] = (),
        logger: logging.Logger = logger,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.state_fields = state_fields
        self.logger = logger

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering

        async def send_and_record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record_status)
        finally:
            elapsed = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", None) or UNMATCHED
            method = scope["method"]
            self.metrics.requests.labels(route, method, str(status)).inc()
            self.metrics.latency.labels(route, method).observe(elapsed)
            if scope["path"] not in UNLOGGED_PATHS:
                self._log_request(scope, route, status, elapsed)

    def _log_request(self, scope: Scope, route: str, status: int, elapsed: float) -> None:
        """One JSON line for an answered request (a request id comes from the log context)."""
        fields: dict[str, object] = {
            "method": scope["method"],
            "path": scope["path"],
            "route": route,
            "status": status,
            "duration_ms": round(elapsed * 1000, 2),
        }
        state = scope.get("state", {})
        for name in self.state_fields:
            value = state.get(name)
            if value is not None:
                fields[name] = value
        self.logger.info("request", extra={"fields": fields})
