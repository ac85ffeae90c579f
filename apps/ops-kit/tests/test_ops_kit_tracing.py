"""TracingMiddleware: a request that carries a W3C traceparent is served in the caller's trace."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from ops_kit import tracing
from ops_kit.testing import InProcess, json_log_lines

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


class Recorder(InMemorySpanExporter):
    """Keeps finished spans while `recording`: the process's provider keeps its processors for
    good, and the tests after these must not fill it."""

    recording = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return super().export(spans) if self.recording else SpanExportResult.SUCCESS


_RECORDER = Recorder()


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """The spans finished in the test, from the process's SDK provider (set here if none is;
    the recorder is added to it once)."""
    for name in tracing.ENDPOINT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    if not getattr(provider, "_ops_kit_test_recorder", False):
        provider.add_span_processor(SimpleSpanProcessor(_RECORDER))
        provider._ops_kit_test_recorder = True  # type: ignore[attr-defined]
    _RECORDER.clear()
    _RECORDER.recording = True
    try:
        yield _RECORDER
    finally:
        _RECORDER.recording = False
        _RECORDER.clear()


def server_spans(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    """The SERVER spans: FastAPI's own (its native OpenTelemetry support) or the kit's."""
    return [s for s in exporter.get_finished_spans() if s.kind == trace.SpanKind.SERVER]


async def test_a_request_with_traceparent_is_a_server_span_of_the_callers_trace(
    in_process: InProcess, spans: InMemorySpanExporter
) -> None:
    with json_log_lines("ops_kit_example") as lines:
        async with in_process() as client:
            answer = await client.get("/api/items/a-1", headers={"traceparent": TRACEPARENT})
    assert answer.status_code == 200
    [span] = server_spans(spans)
    assert span.name == "GET /api/items/{item_id}"
    assert f"{span.context.trace_id:032x}" == TRACE_ID
    assert span.parent is not None and f"{span.parent.span_id:016x}" == PARENT_ID
    assert span.attributes is not None
    assert span.attributes["http.route"] == "/api/items/{item_id}"
    assert span.attributes["http.response.status_code"] == 200
    [line] = [line for line in lines if line.get("path") == "/api/items/a-1"]
    assert line["trace_id"] == TRACE_ID


async def test_a_request_in_an_unsampled_trace_is_served_in_it_unrecorded(
    in_process: InProcess, spans: InMemorySpanExporter
) -> None:
    """A gate marks most of its requests not sampled (zdp.tracing): the app records no span for
    them, and their log lines still name the gate's trace."""
    with json_log_lines("ops_kit_example") as lines:
        async with in_process() as client:
            unsampled = f"00-{TRACE_ID}-{PARENT_ID}-02"  # the random flag only
            answer = await client.get("/api/items/a-1", headers={"traceparent": unsampled})
    assert answer.status_code == 200
    assert server_spans(spans) == []
    [line] = [line for line in lines if line.get("path") == "/api/items/a-1"]
    assert line["trace_id"] == TRACE_ID


async def test_a_traced_request_is_one_span_not_one_per_dependency(
    in_process: InProcess, spans: InMemorySpanExporter
) -> None:
    """No span per dependency, endpoint or serialization (FastAPI's operation spans): with them a
    traced order submit cost about twice the CPU of an untraced one (bench/instrumentation.py)."""
    async with in_process() as client:
        answer = await client.get("/api/items/a-1", headers={"traceparent": TRACEPARENT})
    assert answer.status_code == 200
    assert [s.kind for s in spans.get_finished_spans()] == [trace.SpanKind.SERVER]


async def test_health_probes_get_a_span_only_when_a_trace_asks_for_one(
    in_process: InProcess, spans: InMemorySpanExporter
) -> None:
    async with in_process() as client:
        await client.get("/healthz/ready")
        await client.get("/healthz/live")
        assert server_spans(spans) == []
        await client.get("/healthz/ready", headers={"traceparent": TRACEPARENT})
    [span] = server_spans(spans)
    assert span.name == "GET /healthz/ready"
    assert f"{span.context.trace_id:032x}" == TRACE_ID


# The app as it runs without OTEL_EXPORTER_OTLP_ENDPOINT: no tracer provider in the process.
WITHOUT_PROVIDER = """
import asyncio, json, sys
import httpx
from opentelemetry import trace
from ops_kit.testing import json_log_lines
from ops_kit_example import Settings, create_app

async def main():
    app = create_app(Settings())
    transport = httpx.ASGITransport(app=app)
    with json_log_lines("ops_kit_example") as lines:
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            async with app.router.lifespan_context(app):
                await client.get("/api/items/a-1", headers={"traceparent": sys.argv[1]})
                await client.get("/api/items/a-2")
    provider = type(trace.get_tracer_provider()).__name__
    print(json.dumps({"provider": provider, "lines": [
        {"path": l["path"], "trace_id": l.get("trace_id")} for l in lines if l["msg"] == "request"
    ]}))

asyncio.run(main())
"""


def test_without_an_endpoint_nothing_is_kept_but_the_trace_id_in_the_log_line() -> None:
    env = {k: v for k, v in os.environ.items() if k not in tracing.ENDPOINT_VARIABLES}
    env["PYTHONPATH"] = str(Path(__file__).parent)
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_PROVIDER, TRACEPARENT],
        env=env, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    seen = json.loads(done.stdout.splitlines()[-1])
    assert seen["provider"] == "ProxyTracerProvider"  # none set: no span is recorded
    assert seen["lines"] == [
        {"path": "/api/items/a-1", "trace_id": TRACE_ID},
        {"path": "/api/items/a-2", "trace_id": None},
    ]


def test_spans_are_exported_only_when_an_otlp_endpoint_is_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in tracing.ENDPOINT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert tracing.configure_tracing("ops-kit-example", "1.0.0", "canary") is False


# The app as it runs with OTEL_EXPORTER_OTLP_ENDPOINT: the kit's own provider and sampler. The
# spans are also kept in memory; the batch is larger than the test makes, so nothing is sent to
# the endpoint (nothing listens there), and the process ends without flushing.
WITH_ENDPOINT = """
import asyncio, json, os, sys
import httpx
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from ops_kit.testing import json_log_lines
from ops_kit_example import Settings, create_app

USERS, GATES = int(sys.argv[1]), int(sys.argv[2])

async def main():
    app = create_app(Settings())
    kept = InMemorySpanExporter()
    trace.get_tracer_provider().add_span_processor(SimpleSpanProcessor(kept))
    transport = httpx.ASGITransport(app=app)
    gate_traces = {}
    with json_log_lines("ops_kit_example") as lines:
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            async with app.router.lifespan_context(app):
                for i in range(USERS):
                    assert (await client.get(f"/api/items/user-{i}")).is_success
                for i in range(GATES):
                    trace_id = os.urandom(16).hex()
                    path = f"/api/items/gate-{i}"
                    gate_traces[path] = trace_id
                    parent = f"00-{trace_id}-{os.urandom(8).hex()}-01"
                    assert (await client.get(path, headers={"traceparent": parent})).is_success
    spans = {
        s.attributes["url.path"]: f"{s.context.trace_id:032x}"
        for s in kept.get_finished_spans() if s.kind == trace.SpanKind.SERVER
    }
    logged = {l["path"]: l.get("trace_id") for l in lines if l["msg"] == "request"}
    print(json.dumps({"spans": spans, "logged": logged, "gate_traces": gate_traces}))
    sys.stdout.flush()
    os._exit(0)

asyncio.run(main())
"""


def served_with_an_endpoint(users: int, gates: int, **env: str) -> dict[str, dict[str, Any]]:
    """Run WITH_ENDPOINT: `users` requests in no trace, then `gates` in a sampled trace each."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    search = [str(Path(__file__).parent), *filter(None, [os.environ.get("PYTHONPATH")])]
    environment.update(
        PYTHONPATH=os.pathsep.join(search),
        OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9",
        OTEL_BSP_MAX_QUEUE_SIZE="100000",
        OTEL_BSP_MAX_EXPORT_BATCH_SIZE="100000",
        OTEL_BSP_SCHEDULE_DELAY="600000",
        **env,
    )
    done = subprocess.run(
        [sys.executable, "-c", WITH_ENDPOINT, str(users), str(gates)],
        env=environment, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    seen: dict[str, dict[str, Any]] = json.loads(done.stdout.splitlines()[-1])
    return seen


def test_with_an_endpoint_users_requests_are_sampled_and_every_traced_callers_is_kept() -> None:
    seen = served_with_an_endpoint(users=3000, gates=40)
    spans, logged = seen["spans"], seen["logged"]
    users = {path: trace_id for path, trace_id in spans.items() if "/user-" in path}
    # USER_SAMPLE_RATIO (0.01) of the 3,000: 30 expected, sd about 5.5.
    assert tracing.USER_SAMPLE_RATIO == 0.01
    assert 8 <= len(users) <= 80, len(users)
    # Every request of a gate's (sampled) trace has its span, in that trace.
    assert {p: t for p, t in spans.items() if "/gate-" in p} == seen["gate_traces"]
    # A user's request is logged with its trace id when it was traced, with none when not.
    assert {p: t for p, t in logged.items() if "/user-" in p and t is not None} == users
    assert sum(1 for p in logged if "/user-" in p) == 3000


def test_otel_traces_sampler_decides_instead_of_the_kits_ratio() -> None:
    seen = served_with_an_endpoint(users=200, gates=0, OTEL_TRACES_SAMPLER="parentbased_always_on")
    assert len(seen["spans"]) == 200
    assert all(seen["logged"][path] == trace_id for path, trace_id in seen["spans"].items())
