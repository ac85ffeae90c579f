"""Traces: the process's OpenTelemetry tracer provider and the W3C context the engine passes on.

One trace runs from `zdp deploy` to the apps: the CLI opens a root span around starting the
workflow (`root_span`); Temporal's `TracingInterceptor` (on the CLI's client, `zdp.temporal
.connect`, and on the worker, `worker_interceptors`) carries it in the start's headers to the
workflow and its activities; the gate activity opens a span of its own (`outbound_span`) and its
probes and sampled requests name that span in a `traceparent` header (`outbound_header`), which
the apps' ops kit continues as a server span. A gate sends each endpoint (a probe's or a sampled
request's URL) 20 probes and up to 50 sampled requests a second: one of them a second
(TRACED_EVERY_S) carries the header marked sampled, and the app records a span for it; the others
carry the same trace and parent marked not sampled, so the app's log lines still name the trace
but it records and exports nothing for them. A span for every one would cost the app more than
the goal allows (about 0.1 ms of CPU each; bench/instrumentation.py, docs/benchmarks.md) and
fill a 5-minute gate's trace with 20,000 spans of the same probe.

Where a process's finished spans go, decided once by `setup`:
- OTLP over HTTP when OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set;
  the exporter reads OpenTelemetry's other standard variables (headers, timeout) itself;
- else, in a process of the embedded stack (`zdp up` recorded in $ZDP_HOME), JSON lines in
  $ZDP_HOME/traces/<service>.jsonl, rotated at FILE_LIMIT bytes with one older file kept;
- else nowhere: spans are still made, so trace ids travel and the timeline records them.

The workflow records its trace id from the start's headers (`trace_id_from_headers`), which are
part of the history: the same on every replay.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.util.types import AttributeValue

from zdp.settings import settings

if TYPE_CHECKING:
    from temporalio.api.common.v1 import Payload
    from temporalio.client import Client
    from temporalio.contrib.opentelemetry import TracingInterceptor

log = logging.getLogger("zdp.tracing")

SERVICE_CLI = "zdp-cli"
SERVICE_WORKER = "zdp-worker"
TRACER = "zdp"
ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
TRACES_DIR = "traces"
STACK_RECORD = "stack.json"  # what `zdp up` writes in $ZDP_HOME (zdp.stack, zdp.temporal)
FILE_LIMIT = 4 * 1024 * 1024  # bytes per span file; one older file is kept beside it
# The Temporal header TracingInterceptor puts the W3C carrier in (its default `header_key`).
TEMPORAL_HEADER = "_tracer-data"
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")

_provider: TracerProvider | None = None
_setup_lock = threading.Lock()
TRACED_EVERY_S = 1.0  # per endpoint, a gate's request marked sampled at most this often


class _Outbound:
    """The `traceparent: ...\\r\\n` header lines of one outbound span, built once per span (the
    probes and sampled requests of a gate read them, never format them), and when each endpoint
    was last sent the sampled one."""

    __slots__ = ("last", "sampled", "unsampled")

    def __init__(self, value: str) -> None:
        flags = int(value[-2:], 16)
        self.sampled = f"traceparent: {value}\r\n".encode()  # not sampled if the span is not
        self.unsampled = f"traceparent: {value[:-2]}{flags & ~1:02x}\r\n".encode()
        self.last: dict[str, float] = {}

    def header(self, endpoint: str) -> bytes:
        now = time.monotonic()
        last = self.last.get(endpoint)
        if last is None or now - last >= TRACED_EVERY_S:
            self.last[endpoint] = now
            return self.sampled
        return self.unsampled


_outbound: ContextVar[_Outbound | None] = ContextVar("zdp_traceparent", default=None)


def otlp_endpoint() -> str | None:
    """The OTLP endpoint OpenTelemetry's standard variables (ENDPOINT_VARIABLES) name, if any."""
    traces = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    return traces or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip() or None


def local_store(home: Path) -> Path | None:
    """Where an embedded-stack process keeps its spans: $ZDP_HOME/traces, when `zdp up` runs
    its stack in `home` (its record is there); None otherwise."""
    return home / TRACES_DIR if (home / STACK_RECORD).is_file() else None


def setup(service: str, home: Path | None = None) -> TracerProvider:
    """The process's tracer provider, named `service`, created and made global on the first
    call; later calls (and a provider someone else set first, as tests do) return the one
    already there. The exporter is chosen as the module's docstring says."""
    global _provider
    with _setup_lock:
        if _provider is not None:
            return _provider
        current = trace.get_tracer_provider()
        if isinstance(current, TracerProvider):
            _provider = current
            return current
        provider = TracerProvider(resource=Resource.create({"service.name": service}))
        store = local_store(home or settings().home)
        if otlp_endpoint() is not None:
            exporter = _otlp_exporter()
            if exporter is not None:
                provider.add_span_processor(BatchSpanProcessor(exporter))
        elif store is not None:
            exporter = JsonLinesExporter(store / f"{service}.jsonl")
            provider.add_span_processor(BatchSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        _provider = provider
        return provider


def _otlp_exporter() -> SpanExporter | None:
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        log.warning(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set but opentelemetry-exporter-otlp-proto-http is "
            "not installed: spans are not exported"
        )
        return None
    return OTLPSpanExporter()


def tracer() -> trace.Tracer:
    """The engine's tracer (resolved through the global provider whenever it is set)."""
    return trace.get_tracer(TRACER)


# --------------------------------------------------------------------- Temporal


def _interceptor() -> TracingInterceptor:
    from temporalio.contrib.opentelemetry import TracingInterceptor

    return TracingInterceptor(tracer())


def client_interceptors(given: Sequence[Any] = ()) -> list[Any]:
    """`given` plus Temporal's tracing interceptor, unless `given` has one: a client's spans
    (StartWorkflow, signals, updates, queries) and the trace context in their headers."""
    from temporalio.contrib.opentelemetry import TracingInterceptor

    if any(isinstance(i, TracingInterceptor) for i in given):
        return list(given)
    return [*given, _interceptor()]


def worker_interceptors(client: Client) -> list[Any]:
    """Sets the process up as `zdp-worker`; the tracing interceptor for a worker on `client`
    (workflow and activity spans), or none when the client has one already: a worker takes
    its client's interceptors, and one registered twice makes every span twice."""
    from temporalio.contrib.opentelemetry import TracingInterceptor

    setup(SERVICE_WORKER)
    if any(isinstance(i, TracingInterceptor) for i in client.config()["interceptors"]):
        return []
    return [_interceptor()]


def trace_id_from_headers(headers: Mapping[str, Payload]) -> str | None:
    """The W3C trace id (32 hex digits) a workflow's start carried in its headers, if any.

    Pure and deterministic: the headers are in the history, so a replay reads the same id."""
    payload = headers.get(TEMPORAL_HEADER)
    if payload is None:
        return None
    try:
        carrier = json.loads(payload.data)
    except (ValueError, UnicodeDecodeError):
        return None
    value = carrier.get("traceparent") if isinstance(carrier, dict) else None
    match = _TRACEPARENT.match(value) if isinstance(value, str) else None
    if match is None or match.group(1) == "0" * 32:
        return None
    return match.group(1)


# --------------------------------------------------------------------- spans


@contextlib.contextmanager
def root_span(name: str, attributes: Mapping[str, AttributeValue]) -> Iterator[trace.Span]:
    """A new trace, whatever span is current (a command starts one per deployment)."""
    with tracer().start_as_current_span(
        name,
        context=otel_context.Context(),
        kind=trace.SpanKind.CLIENT,
        attributes=dict(attributes),
    ) as span:
        yield span


def traceparent(span: trace.Span) -> str | None:
    """`span`'s W3C traceparent value; None for an invalid span (no trace at all)."""
    ctx = span.get_span_context()
    if not ctx.is_valid:
        return None
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


@contextlib.contextmanager
def outbound_span(name: str, attributes: Mapping[str, AttributeValue]) -> Iterator[trace.Span]:
    """A child of the current span for work that makes HTTP requests (a gate). While it runs,
    `outbound_header(endpoint)` is the `traceparent` line that names it, so every request made
    in it (in tasks started inside it too: they copy the context) joins the trace for a context
    variable read and a clock reading; one a second per endpoint is marked sampled (the
    module's docstring)."""
    with tracer().start_as_current_span(
        name, kind=trace.SpanKind.CLIENT, attributes=dict(attributes)
    ) as span:
        value = traceparent(span)
        token = _outbound.set(_Outbound(value) if value else None)
        try:
            yield span
        finally:
            _outbound.reset(token)


def outbound_header(endpoint: str) -> bytes:
    """The `traceparent: ...\\r\\n` line for a request to `endpoint` made in the current
    outbound span, marked sampled if `endpoint` had no sampled one in the last TRACED_EVERY_S
    seconds; b"" outside an outbound span."""
    return outbound_headers()(endpoint)


def outbound_headers() -> Callable[[str], bytes]:
    """`outbound_header` bound to the current outbound span, for code that may run outside its
    context (a sweep's callbacks run in the connections' own)."""
    outbound = _outbound.get()
    return _no_header if outbound is None else outbound.header


def _no_header(endpoint: str) -> bytes:
    return b""


# --------------------------------------------------------------------- the local store


class JsonLinesExporter(SpanExporter):
    """Finished spans as JSON lines in one file, bounded: at `limit` bytes the file becomes
    `<name>.1` (replacing the older one) and a new one starts, so at most twice `limit` bytes
    are kept. Appends are single writes; processes of one service share the file."""

    def __init__(self, path: Path, limit: int = FILE_LIMIT) -> None:
        self.path = path
        self.limit = limit
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        blob = "".join(json.dumps(span_record(s), separators=(",", ":")) + "\n" for s in spans)
        data = blob.encode()
        try:
            with self._lock:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with contextlib.suppress(FileNotFoundError):
                    if self.path.stat().st_size + len(data) > self.limit:
                        os.replace(self.path, self.path.with_name(self.path.name + ".1"))
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                try:
                    os.write(fd, data)
                finally:
                    os.close(fd)
        except OSError as err:
            log.warning("cannot keep spans in %s: %s", self.path, err.strerror or err)
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def span_record(span: ReadableSpan) -> dict[str, Any]:
    """One span as the local store keeps it: ids in W3C hex, times in UTC."""
    ctx = span.get_span_context()
    start, end = span.start_time or 0, span.end_time or span.start_time or 0
    record: dict[str, Any] = {
        "trace_id": f"{ctx.trace_id:032x}" if ctx else None,
        "span_id": f"{ctx.span_id:016x}" if ctx else None,
        "parent_id": f"{span.parent.span_id:016x}" if span.parent else None,
        "name": span.name,
        "kind": span.kind.name.lower(),
        "service": span.resource.attributes.get("service.name"),
        "start": datetime.fromtimestamp(start / 1e9, UTC).isoformat(timespec="microseconds"),
        "duration_ms": round((end - start) / 1e6, 3),
        "status": span.status.status_code.name.lower(),
        "attributes": dict(span.attributes or {}),
    }
    return record
