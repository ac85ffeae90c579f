"""Traces: each request that carries a W3C `traceparent` is served in the caller's trace.

The engine's gates send `traceparent` with every probe and sampled request, naming the gate's
span. The request's SERVER span (named by method and route template, `GET /api/items/{item_id}`,
with its method, path, route and status) continues that trace: `TracingMiddleware` makes it,
recorded when a tracer provider is configured, else a non-recording one that only carries the
caller's ids. Health probes that are in no trace get none (the proxy's and the orchestrator's
checks would bury the requests that matter). The span is current while the request is served,
so its JSON log lines carry the `trace_id` (logs.py).

FastAPI's own tracing (its native OpenTelemetry support, FastAPI >= 0.13x) is turned off by
`instrument`: it made a span per dependency, endpoint and serialization besides the SERVER span,
and even without those its SERVER span cost about half again the CPU of the kit's, which
matters on every request of a traced app (bench/instrumentation.py, docs/benchmarks.md).

Where spans go (`configure_tracing`, called by `instrument`, which `operations.install` calls):
- OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) set and the kit's
  `tracing` extra installed: exported over OTLP/HTTP, service.name = the app's name;
- otherwise nothing is kept: the trace id in the request's log line is all there is (and the
  logs are as bounded as they were: health probes are not logged).

Which requests are traced when spans are exported (`sampler`): every request that arrives in a
sampled trace (a traced caller's; a gate marks one request a second per endpoint sampled, the
others not, zdp.tracing), and a share of the others, the users' own requests, picked by trace
id: USER_SAMPLE_RATIO, one in a hundred. A traced request costs the app about 0.1 ms of CPU
(its span, and encoding and posting it): tracing every order submit cost finance-trading 18.5 %
more CPU per submit, the kit's default 3 % (bench/instrumentation.py, docs/benchmarks.md).
OpenTelemetry's `OTEL_TRACES_SAMPLER` (and `OTEL_TRACES_SAMPLER_ARG`) decides instead when set:
`parentbased_always_on` traces every request, `parentbased_traceidratio` with 0.1 one in ten.
A request left out is served as an untraced one: no span is made current and its log line
carries no trace id, since none would be found. A request in a caller's trace that is not
sampled is served in that trace, unrecorded: its log lines carry the caller's trace id.

Without OpenTelemetry installed (the images install the kit without extras), `install` adds no
middleware and nothing changes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import MutableMapping
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

try:
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError:  # the kit without its `tracing` extra
    trace = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

TRACER = "ops_kit"
ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
# Health probes (every 50 ms from each gate and the proxy) get a span only when a gate's trace
# asks for one: spans of their own would bury the requests that matter.
UNTRACED_PATHS = frozenset({"/healthz/live", "/healthz/ready"})
_PROPAGATED = (b"traceparent", b"tracestate")
EXPORT_BATCH = 64  # spans per OTLP export (configure_tracing)
USER_SAMPLE_RATIO = 0.01  # of the requests that arrive in no trace, unless set (sampler)


def available() -> bool:
    """Whether OpenTelemetry's API is installed (the kit's `tracing` extra)."""
    return trace is not None


def configure_tracing(service_name: str, version: str, slot: str | None) -> bool:
    """Export spans over OTLP when OpenTelemetry's endpoint variable is set: True when spans
    are exported (a provider set before, by the process's host, counts as exporting)."""
    if trace is None or not any(os.environ.get(v, "").strip() for v in ENDPOINT_VARIABLES):
        return False
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        logger.warning(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set but the OpenTelemetry SDK or its OTLP exporter "
            "is not installed (zdp-ops-kit[tracing]): spans are not exported"
        )
        return False
    if isinstance(trace.get_tracer_provider(), TracerProvider):
        return True
    attributes = {"service.name": service_name, "service.version": version}
    if slot:
        attributes["zdp.slot"] = slot
    provider = TracerProvider(resource=Resource.create(attributes), sampler=sampler())
    # Small batches: the encoding of a batch holds the GIL (64 spans about 1.2 ms here, 512
    # about 9), and the requests served meanwhile wait (docs/benchmarks.md).
    # OTEL_BSP_MAX_EXPORT_BATCH_SIZE decides when it is set.
    batch = None if os.environ.get("OTEL_BSP_MAX_EXPORT_BATCH_SIZE") else EXPORT_BATCH
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(), max_export_batch_size=batch))
    trace.set_tracer_provider(provider)
    return True


def sampler() -> Any:
    """The kit's sampler (the module's docstring), or None when `OTEL_TRACES_SAMPLER` is set: the
    SDK's provider then builds the one it names."""
    if os.environ.get("OTEL_TRACES_SAMPLER", "").strip():
        return None
    from opentelemetry.sdk.trace.sampling import ParentBasedTraceIdRatio

    return ParentBasedTraceIdRatio(USER_SAMPLE_RATIO)


def current_trace_id() -> str | None:
    """The trace id (32 hex digits) of the request being served, when it is in a trace."""
    if trace is None:
        return None
    ctx = trace.get_current_span().get_span_context()
    return f"{ctx.trace_id:032x}" if ctx.is_valid else None


def instrument(app: FastAPI, app_name: str, version: str, slot: str | None) -> None:
    """Trace `app`'s requests as the module's docstring says (nothing without OpenTelemetry)."""
    if trace is None:
        return
    exported = configure_tracing(app_name, version, slot)
    native = getattr(app, "_telemetry", None)  # FastAPI's own OpenTelemetry config, if it has it
    if isinstance(native, dict):
        native["tracing"] = False  # the kit's SERVER span instead (the module's docstring)
        if native.get("exclude") is None:  # its metrics and logs, should a host configure them
            native["exclude"] = untraced_probe
    app.add_middleware(TracingMiddleware, every_request=exported)


def untraced_probe(scope: MutableMapping[str, Any]) -> bool:
    """A health probe that is in no trace: not worth a span."""
    if scope.get("path") not in UNTRACED_PATHS:
        return False
    return not any(name == b"traceparent" for name, _ in scope.get("headers", ()))


class TracingMiddleware:
    """Pure ASGI middleware: the request's SERVER span in the caller's trace, unless FastAPI
    made one already (an app that turned its own tracing back on); for a request without
    `traceparent` only when `every_request` (spans are exported) and the sampler picks it, and
    never for a health probe."""

    def __init__(self, app: ASGIApp, every_request: bool = False) -> None:
        self.app = app
        self.every_request = every_request
        self.propagator = TraceContextTextMapPropagator() if trace is not None else None
        self._provider: object = None
        self._tracer: Any = None

    def tracer(self) -> Any:
        """The kit's tracer from the process's provider, looked up again only when the provider
        changes: the SDK's `get_tracer` costs about as much as the span itself."""
        provider = trace.get_tracer_provider()
        if provider is not self._provider:
            self._provider, self._tracer = provider, provider.get_tracer(TRACER)
        return self._tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or trace is None
            or self.propagator is None
            or getattr(scope.get("fastapi.telemetry"), "span", None) is not None
        ):
            await self.app(scope, receive, send)
            return
        carrier: dict[str, str] = {}
        for name, value in scope["headers"]:
            if name in _PROPAGATED:
                carrier[name.decode()] = value.decode("latin-1")
        if not carrier and (not self.every_request or scope["path"] in UNTRACED_PATHS):
            await self.app(scope, receive, send)
            return
        parent = self.propagator.extract(carrier) if carrier else None
        method = scope["method"]
        status = 500  # what the client gets if the app raises before answering

        async def send_and_record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        attributes: dict[str, Any] = {"http.request.method": method, "url.path": scope["path"]}
        span = self.tracer().start_span(
            method, context=parent, kind=trace.SpanKind.SERVER, attributes=attributes
        )
        if parent is None and not span.is_recording():  # a user's request the sampler left out
            await self.app(scope, receive, send)
            return
        with trace.use_span(span, end_on_exit=True):
            try:
                await self.app(scope, receive, send_and_record_status)
            finally:
                route = getattr(scope.get("route"), "path", None)
                ended: dict[str, Any] = {"http.response.status_code": status}
                if route:
                    span.update_name(f"{method} {route}")
                    ended["http.route"] = route
                span.set_attributes(ended)
                if status >= 500:
                    span.set_status(trace.Status(trace.StatusCode.ERROR, f"HTTP {status}"))
