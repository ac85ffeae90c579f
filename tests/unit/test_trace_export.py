"""zdp.tracing: where spans go (OTLP only with an endpoint, a bounded file on the embedded stack,
else nowhere), the trace id read from a start's headers, and the gate's traceparent on probes.

Which exporter a process gets is decided once per process, so those tests run a small Python
process of their own; the OTLP receiver is a loopback HTTP server in this test.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from temporalio.api.common.v1 import Payload

from zdp import tracing
from zdp.health.http_probe import HttpProbe

REPO = Path(__file__).resolve().parents[2]

# Sets the process up as the CLI does, makes three spans, flushes at exit; reports which span
# processors it got, every outgoing connection it attempted and whether OTLP was loaded.
A_COMMAND = """
import json, socket, sys
attempts = []
real_connect = socket.socket.connect
def connect(self, address):
    attempts.append(repr(address))
    return real_connect(self, address)
socket.socket.connect = connect
from zdp import tracing
provider = tracing.setup(tracing.SERVICE_CLI)
with tracing.root_span("zdp deploy", {"zdp.app": "webshop"}) as root:
    with tracing.outbound_span("gate canary", {}):
        pass
    with tracing.tracer().start_as_current_span("StartWorkflow:DeploymentWorkflow"):
        pass
provider.shutdown()
print(json.dumps({
    "trace_id": format(root.get_span_context().trace_id, "032x"),
    "processors": [type(p).__name__ for p in provider._active_span_processor._span_processors],
    "connections": attempts,
    "otlp_loaded": "opentelemetry.exporter.otlp.proto.http.trace_exporter" in sys.modules,
}))
"""


def run_command(home: Path, **env: str) -> dict[str, object]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OTEL_", "TEMPORAL_")) and k != "ZDP_HOME"
    }
    done = subprocess.run(
        [sys.executable, "-c", A_COMMAND],
        env={**clean, "ZDP_HOME": str(home), "PYTHONPATH": str(REPO), **env},
        cwd=home, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout.splitlines()[-1]))


def test_without_an_endpoint_nothing_is_exported_over_the_network(tmp_path: Path) -> None:
    seen = run_command(tmp_path)
    assert seen["processors"] == []  # spans are made (trace ids travel) and dropped
    assert seen["connections"] == []
    assert seen["otlp_loaded"] is False
    assert not (tmp_path / "traces").exists()  # no stack here: no local store either


def test_the_embedded_stack_keeps_spans_in_its_home(tmp_path: Path) -> None:
    (tmp_path / "stack.json").write_text("{}")  # `zdp up` ran its stack in this home
    seen = run_command(tmp_path)
    assert seen["connections"] == []
    lines = (tmp_path / "traces" / "zdp-cli.jsonl").read_text().splitlines()
    records = {r["name"]: r for r in map(json.loads, lines)}
    assert set(records) == {"zdp deploy", "gate canary", "StartWorkflow:DeploymentWorkflow"}
    root = records["zdp deploy"]
    assert root["parent_id"] is None and root["trace_id"] == seen["trace_id"]
    assert root["service"] == "zdp-cli" and root["attributes"] == {"zdp.app": "webshop"}
    assert records["gate canary"]["parent_id"] == root["span_id"]


class Receiver(BaseHTTPRequestHandler):
    """An OTLP/HTTP collector's door: records each POST (path, content type, body)."""

    posts: list[tuple[str, str, bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.posts.append((self.path, self.headers.get("Content-Type", ""), body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[str]:
    Receiver.posts = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_with_an_endpoint_spans_are_exported_over_otlp_http(tmp_path: Path, collector: str) -> None:
    (tmp_path / "stack.json").write_text("{}")  # the endpoint wins over the local store
    seen = run_command(tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT=collector)
    assert seen["processors"] == ["BatchSpanProcessor"] and seen["otlp_loaded"] is True
    assert Receiver.posts, "nothing reached the collector"
    path, content_type, body = Receiver.posts[0]
    assert (path, content_type) == ("/v1/traces", "application/x-protobuf")
    assert b"zdp deploy" in body and bytes.fromhex(str(seen["trace_id"])) in body
    assert not (tmp_path / "traces").exists()


def test_the_local_store_is_bounded(tmp_path: Path) -> None:
    provider = TracerProvider()
    store = tmp_path / "traces" / "zdp-worker.jsonl"
    exporter = tracing.JsonLinesExporter(store, limit=4096)
    spans = []
    for i in range(200):
        span = provider.get_tracer("t").start_span(f"span {i}")
        span.end()
        spans.append(span)
    for i in range(0, 200, 10):
        exporter.export(spans[i : i + 10])  # type: ignore[arg-type]
    older = store.with_name("zdp-worker.jsonl.1")
    assert store.stat().st_size <= 4096 and older.stat().st_size <= 4096
    assert sorted(p.name for p in store.parent.iterdir()) == [store.name, older.name]
    last = json.loads(store.read_text().splitlines()[-1])
    assert last["name"] == "span 199"


def _headers(carrier: object) -> dict[str, Payload]:
    data = json.dumps(carrier).encode()
    return {tracing.TEMPORAL_HEADER: Payload(metadata={"encoding": b"json/plain"}, data=data)}


def test_the_trace_id_is_read_from_a_starts_headers() -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    parent = {"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}
    assert tracing.trace_id_from_headers(_headers(parent)) == trace_id
    assert tracing.trace_id_from_headers({}) is None
    assert tracing.trace_id_from_headers(_headers({"traceparent": "00-zz"})) is None
    assert tracing.trace_id_from_headers(_headers(["not", "a", "carrier"])) is None
    zeros = {"traceparent": f"00-{'0' * 32}-00f067aa0ba902b7-01"}
    assert tracing.trace_id_from_headers(_headers(zeros)) is None
    broken = {tracing.TEMPORAL_HEADER: Payload(data=b"\xff not json")}
    assert tracing.trace_id_from_headers(broken) is None


async def test_probes_carry_the_gate_spans_traceparent_only_inside_it() -> None:
    tracing.setup("zdp-test")  # a recording provider, so the gate's span is a real one
    heads: list[bytes] = []
    handlers: list[asyncio.Task[object]] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.append(asyncio.current_task())  # type: ignore[arg-type]
        try:
            while True:
                heads.append(await reader.readuntil(b"\r\n\r\n"))
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    endpoint = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        async with HttpProbe(timeout=5.0) as probe:
            assert (await probe.probe(endpoint)).ok
            with tracing.outbound_span("gate canary", {}) as gate:
                assert (await probe.probe(endpoint)).ok
                assert (await probe.probe(endpoint)).ok
            assert (await probe.probe(endpoint)).ok
        await asyncio.wait(handlers, timeout=30)  # each sees its connection closed, and ends
    finally:
        server.close()
        await server.wait_closed()
    value = tracing.traceparent(gate)
    assert value is not None and int(value[-2:], 16) & 1  # the gate's span is sampled
    sampled = f"traceparent: {value}\r\n".encode()
    unsampled = f"traceparent: {value[:-2]}{int(value[-2:], 16) & ~1:02x}\r\n".encode()
    # The gate's first probe of the endpoint is marked sampled, the next (within a second) not.
    assert [(sampled in head, unsampled in head) for head in heads] == [
        (False, False),
        (True, False),
        (False, True),
        (False, False),
    ]
    ctx = gate.get_span_context()
    flags = int(ctx.trace_flags)
    assert tracing.traceparent(gate) == f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{flags:02x}"


def test_a_gate_marks_one_request_a_second_per_endpoint_sampled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """20 probes and 50 sampled requests a second per endpoint: a span each would cost the app
    more than the instrumentation may (docs/benchmarks.md); the rest carry the trace unsampled."""
    tracing.setup("zdp-test")
    now = [100.0]
    monkeypatch.setattr(tracing.time, "monotonic", lambda: now[0])
    assert tracing.outbound_header("http://a") == b""  # outside a gate: nothing
    with tracing.outbound_span("gate canary", {}) as gate:
        value = tracing.traceparent(gate)
        assert value is not None
        flags = int(value[-2:], 16)
        assert flags & 1
        sampled = f"traceparent: {value}\r\n".encode()
        unsampled = f"traceparent: {value[:-2]}{flags & ~1:02x}\r\n".encode()
        seen = []
        for i in range(25):  # 1.25 s of probes, 50 ms apart, to two endpoints
            now[0] = 100.0 + i * 0.05
            seen.append((tracing.outbound_header("http://a"), tracing.outbound_header("http://b")))
        bound = tracing.outbound_headers()
    assert [i for i, (a, _) in enumerate(seen) if a == sampled] == [0, 20]
    assert [i for i, (_, b) in enumerate(seen) if b == sampled] == [0, 20]
    assert all(h in (sampled, unsampled) for pair in seen for h in pair)
    # Bound to the gate's span, for callbacks that run outside its context.
    assert bound("http://c") == sampled and bound("http://c") == unsampled
    assert tracing.outbound_headers()("http://c") == b""
