"""One trace from `zdp deploy`'s start to an app request made by the gate (issue 17).

The client starts the deployment inside the CLI's root span on a client with Temporal's tracing
interceptor (as `zdp deploy` does); the worker runs the memory platform, except that every slot's
endpoint is a real ops-kit app served over HTTP in this process and the probe is the engine's
HttpProbe, so the gate's probes and sampled requests are real requests. Every finished span goes
to an in-memory exporter.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI, HTTPException
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from ops_kit import operations as ops
from ops_kit.lifecycle import Lifecycle
from ops_kit.readiness import ReadinessMonitor
from ops_kit.settings import DrillSettings
from temporalio.client import Client

from tests.kit import APP, Harness
from tests.ports import free_port
from workers.worker import Platform, build_worker
from zdp import deployments, tracing
from zdp.cli.progress import render_timeline
from zdp.forensics.report import render_html, render_markdown
from zdp.health.http_probe import HttpProbe
from zdp.models import Outcome
from zdp.platforms.memory.platform import MemoryAppQuery, MemoryRouter, MemoryRuntime, MemoryState

SAMPLE_PATH = "/api/items/sampled"
log = logging.getLogger("traced_app")

# The shipped test policies with the gate's sampled requests on (a business path of the app).
POLICIES = """
policies:
  test-low: &test
    probe_interval_seconds: 0.05
    probe_timeout_ms: 500
    breaker_failure_threshold: 3
    breaker_open_seconds: 1.0
    min_samples: 2
    min_failures: 3
    max_error_ratio: 0.02
    sample_path: {sample}
    sample_rate_per_s: 10
  test-medium: {{<<: *test}}
  test-high: {{<<: *test}}
  test-critical: {{<<: *test}}
"""


class Recorder(InMemorySpanExporter):
    """Keeps finished spans while `recording`: the process's provider keeps its processors for
    good, and the tests after this one must not fill it."""

    recording = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return super().export(spans) if self.recording else SpanExportResult.SUCCESS


_RECORDER = Recorder()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """The spans finished during the test (the process's provider, set up as a worker's)."""
    provider = tracing.setup(tracing.SERVICE_WORKER)
    if not getattr(provider, "_zdp_test_recorder", False):
        provider.add_span_processor(SimpleSpanProcessor(_RECORDER))
        provider._zdp_test_recorder = True  # type: ignore[attr-defined]
    _RECORDER.clear()
    _RECORDER.recording = True
    try:
        yield _RECORDER
    finally:
        _RECORDER.recording = False
        _RECORDER.clear()


@dataclass(frozen=True, kw_only=True)
class AppSettings(DrillSettings):
    app_name: str = "traced-app"
    version: str = "2.0.0"
    slot: str | None = None


def traced_app() -> FastAPI:
    """The smallest ops-kit app: health, readiness, version, metrics and one business route."""
    lifecycle = Lifecycle()
    readiness = ReadinessMonitor(lambda: None, subject="nothing")

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with readiness.running():
            lifecycle.mark_started()
            yield

    async def no_drills() -> None:
        raise HTTPException(status_code=404, detail="Not Found")

    app = FastAPI(lifespan=lifespan)
    drills = ops.drill_router(no_drills, lambda _: {}, log)
    ops.install(app, AppSettings(), lifecycle, readiness, drills, telemetry_logger=log)

    @app.get("/api/items/{item_id}")
    async def item(item_id: str) -> dict[str, str]:
        return {"item": item_id}

    return app


@pytest.fixture
async def app_url() -> AsyncIterator[str]:
    """The app served by uvicorn in this process, on a free loopback port."""
    port = free_port()
    config = uvicorn.Config(
        traced_app(), host="127.0.0.1", port=port, lifespan="on", log_config=None,
        access_log=False, loop="asyncio",
    )  # fmt: skip
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    deadline = asyncio.get_running_loop().time() + 30
    while not server.started:
        if task.done() or asyncio.get_running_loop().time() > deadline:
            pytest.fail("the traced app did not start")
        await asyncio.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await asyncio.wait_for(task, timeout=30)


class HttpAppRuntime(MemoryRuntime):
    """The memory runtime whose every running version answers at `url`, a real HTTP app."""

    def __init__(self, state: MemoryState, url: str, scope: str | None = None) -> None:
        super().__init__(state, scope)
        self.url = url

    def for_environment(self, environment: str) -> HttpAppRuntime:
        return HttpAppRuntime(self.state, self.url, environment)

    async def endpoints(self, app: str, slot: str) -> list[str]:
        return [self.url] if (app, slot) in self.state.deployed else []


def by_id(spans: list[ReadableSpan]) -> dict[int, ReadableSpan]:
    return {s.context.span_id: s for s in spans if s.context is not None}


def ancestors(span: ReadableSpan, index: dict[int, ReadableSpan]) -> list[str]:
    """The names of `span`'s parents, nearest first, as far as they were recorded."""
    names = []
    while span.parent is not None and span.parent.span_id in index:
        span = index[span.parent.span_id]
        names.append(span.name)
    return names


async def test_one_trace_runs_from_the_clients_start_to_the_apps_requests_made_by_the_gate(
    kit: Harness, spans: InMemorySpanExporter, app_url: str, tmp_path: Path
) -> None:
    policies = tmp_path / "gate-policies.yaml"
    policies.write_text(POLICIES.format(sample=SAMPLE_PATH))
    kit.config.gate_policies = str(policies)
    # A client as `zdp deploy` has it (zdp.temporal.connect adds the same interceptor).
    client = Client(**{**kit.client.config(), "interceptors": tracing.client_interceptors()})
    platform = Platform(
        HttpAppRuntime(kit.state, app_url),
        MemoryRouter(kit.state),
        HttpProbe(),
        MemoryAppQuery(kit.state),
    )
    worker = build_worker(
        client, platform, config=kit.config, trusted_keys_dir=kit.signer.trusted_dir,
        task_queue=kit.task_queue, home=kit.home,
    )  # fmt: skip
    request = kit.request("2.0.0", steps=[100], bake_seconds=1.0)
    async with worker:
        with tracing.root_span("zdp deploy", {"zdp.app": APP}) as root:
            handle = await deployments.start_deployment(client, request, kit.task_queue)
        kit.started.append(handle)
        result = await asyncio.wait_for(handle.result(), timeout=120)
    assert result.outcome is Outcome.promoted, result.cause

    trace_id = root.get_span_context().trace_id
    finished = [s for s in spans.get_finished_spans() if s.context.trace_id == trace_id]
    index = by_id(finished)
    names = {s.name for s in finished}
    assert {
        "zdp deploy",
        "StartWorkflow:DeploymentWorkflow",
        "RunWorkflow:DeploymentWorkflow",
        "RunActivity:run_health_gate",
    } <= names, sorted(names)
    # Each once: the worker's client has the interceptor, so the worker does not add another.
    assert [s.name for s in finished].count("RunWorkflow:DeploymentWorkflow") == 1

    gates = [s for s in finished if s.name.startswith("gate ")]
    assert gates, sorted(names)
    for gate in gates:
        assert ancestors(gate, index)[0] == "RunActivity:run_health_gate"
        assert ancestors(gate, index)[-1] == "zdp deploy"
    gate_ids = {g.context.span_id for g in gates}
    served = [s for s in finished if s.kind == SpanKind.SERVER and s.name.startswith("GET ")]
    made_by_gate = [s for s in served if s.parent is not None and s.parent.span_id in gate_ids]
    routes = {s.name for s in made_by_gate}
    # Probes of readiness and the gate's sampled requests both reached the app in the trace.
    assert {"GET /healthz/ready", "GET /api/items/{item_id}"} <= routes, sorted(routes)
    # The parent chain of an app request made by the gate, up to the client's start.
    chain = ancestors(made_by_gate[0], index)
    assert chain[0].startswith("gate "), chain
    assert chain[1:] == [
        "RunActivity:run_health_gate",
        "StartActivity:run_health_gate",
        "StartWorkflow:DeploymentWorkflow",
        "zdp deploy",
    ]

    # The timeline names the trace, so `zdp timeline` and the report lead to it.
    [started] = [e for e in result.timeline if e.kind == "started"]
    assert started.data["trace_id"] == f"{trace_id:032x}"
    assert f"started            deployment of {APP}" in render_timeline(result.timeline)
    assert f"  trace {trace_id:032x}" in render_timeline(result.timeline).splitlines()[0]
    assert f"| Trace id | {trace_id:032x} |" in render_markdown(result)
    assert f"{trace_id:032x}" in render_html(result)


async def test_a_start_outside_any_trace_records_no_trace_id(harness: Harness) -> None:
    result = await harness.deploy(harness.request("2.0.0"))
    [started] = [e for e in result.timeline if e.kind == "started"]
    assert "trace_id" not in started.data
    assert " trace " not in render_timeline(result.timeline).splitlines()[0]
    assert "Trace id" not in render_markdown(result)
