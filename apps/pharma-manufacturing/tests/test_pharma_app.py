"""pharma-manufacturing: operational endpoints, the batch read, drill faults (for QA users
only), the SIGTERM drain."""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import httpx
import pytest
from pharma_kit import as_user, drill_user, step_body, write_headers
from pharma_manufacturing.main import create_app
from pharma_manufacturing.settings import Settings

if TYPE_CHECKING:  # conftest is pytest's, so import it for the type names only
    from pathlib import Path

    from conftest import AppProcess, InProcess

StartApp = Callable[[dict[str, str]], "AppProcess"]


async def test_health_version_and_metrics(in_process: InProcess) -> None:
    env = {"APP_VERSION": "2.0.0", "APP_SLOT": "green"}
    async with in_process(env) as client:
        assert (await client.get("/healthz/live")).json() == {"status": "live"}
        ready = await client.get("/healthz/ready")
        assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
        assert (await client.get("/version")).json() == {
            "app": "pharma-manufacturing",
            "version": "2.0.0",
            "slot": "green",
        }
        await client.get("/api/batches/B-1001")
        metrics = await client.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    assert (
        'http_requests_total{method="GET",path="/api/batches/{batch_id}",status="200"} 1.0'
        in metrics.text
    )
    assert 'http_request_duration_seconds_count{method="GET",path="/healthz/live"} 1.0' in (
        metrics.text
    )


async def test_version_defaults_to_package_version_and_no_slot(in_process: InProcess) -> None:
    async with in_process() as client:
        assert (await client.get("/version")).json() == {
            "app": "pharma-manufacturing",
            "version": "1.0.0",
            "slot": None,
        }


async def test_ready_is_starting_before_startup(in_process: InProcess) -> None:
    async with in_process(started=False) as client:
        ready = await client.get("/healthz/ready")
        assert (ready.status_code, ready.json()) == (503, {"status": "starting"})
        assert (await client.get("/healthz/live")).status_code == 200


async def test_seeded_batch_is_found_and_unknown_batch_is_404(in_process: InProcess) -> None:
    async with in_process() as client:
        batch = await client.get("/api/batches/B-1002")
        unknown = await client.get("/api/batches/B-9999")
    assert batch.status_code == 200
    assert batch.json()["product"] == "Paracetamol 500 mg tablets"
    assert batch.json()["status"] == "in_progress"
    assert unknown.status_code == 404


async def test_error_rate_one_fails_api_but_not_health(in_process: InProcess) -> None:
    async with in_process({"APP_FAULT_ERROR_RATE": "1"}) as client:
        api = [(await client.get("/api/batches/B-1001")).status_code for _ in range(5)]
        step = await client.post(
            "/api/batches/B-1001/steps", json=step_body(), headers=write_headers("k-1")
        )
        health = [
            (await client.get(path)).status_code
            for path in ("/healthz/live", "/healthz/ready", "/version", "/metrics")
        ]
        metrics = (await client.get("/metrics")).text
    assert api == [503] * 5
    assert step.status_code == 503
    assert health == [200] * 4
    assert 'path="/api/batches/{batch_id}",status="503"} 5.0' in metrics


async def test_error_rate_half_fails_exactly_half_of_ten(in_process: InProcess) -> None:
    async with in_process({"APP_FAULT_ERROR_RATE": "0.5"}) as client:
        statuses = [(await client.get("/api/batches/B-1001")).status_code for _ in range(10)]
    assert statuses.count(503) == 5
    assert statuses.count(200) == 5


async def test_latency_fault_delays_api_only(in_process: InProcess) -> None:
    async with in_process({"APP_FAULT_LATENCY_MS": "1000"}) as client:
        started = time.perf_counter()
        assert (await client.get("/api/batches/B-1001")).status_code == 200
        api_s = time.perf_counter() - started
        started = time.perf_counter()
        assert (await client.get("/healthz/ready")).status_code == 200
        health_s = time.perf_counter() - started
    assert api_s >= 1.0
    assert health_s < 1.0  # not delayed (generous: shared 2-core box)


async def test_ready_delay_keeps_readiness_starting(in_process: InProcess) -> None:
    async with in_process({"APP_FAULT_READY_DELAY_S": "0.4"}) as client:
        early = await client.get("/healthz/ready")
        assert (await client.get("/healthz/live")).status_code == 200
        await asyncio.sleep(0.5)
        late = await client.get("/healthz/ready")
    assert (early.status_code, early.json()) == (503, {"status": "starting"})
    assert (late.status_code, late.json()) == (200, {"status": "ready"})


def test_crash_on_start_exits_with_code_3(app_process: StartApp) -> None:
    app = app_process({"APP_FAULT_CRASH_ON_START": "1"})
    assert app.process.wait(timeout=30) == 3, app.log()
    assert "injected fault APP_FAULT_CRASH_ON_START" in app.log()


def test_sigterm_drains_then_exits_zero(app_process: StartApp) -> None:
    app = app_process({"APP_FAULT_LATENCY_MS": "1500", "APP_DRAIN_DELAY_S": "0.5"})
    app.wait_ready()
    in_flight: dict[str, httpx.Response] = {}
    slow = threading.Thread(
        target=lambda: in_flight.update(
            response=httpx.get(f"{app.base_url}/api/batches/B-1001", timeout=10)
        )
    )
    slow.start()
    time.sleep(0.3)  # the slow request is now being served

    app.process.send_signal(signal.SIGTERM)
    try:
        ready = httpx.get(f"{app.base_url}/healthz/ready", timeout=2)
        assert (ready.status_code, ready.json()) == (503, {"status": "draining"})
    except httpx.TransportError:
        pass  # the listener already closed: the proxy sees that as not ready too

    slow.join(timeout=10)
    assert not slow.is_alive(), "the in-flight request did not finish"
    assert in_flight["response"].status_code == 200  # it outlived the 0.5 s drain delay
    assert app.process.wait(timeout=10) == 0, app.log()
    lines = [json.loads(line) for line in app.log().splitlines() if line.strip()]
    assert {"ts", "level", "msg"} <= lines[0].keys()
    assert any(line["msg"] == "draining" for line in lines)


async def test_drill_endpoint_is_off_unless_enabled(in_process: InProcess) -> None:
    async with in_process({}) as client:
        answer = await client.post("/drill/faults", json={"error_rate": 1.0}, headers=drill_user())
        assert answer.status_code == 404


async def test_drill_endpoint_changes_faults_of_a_running_process(in_process: InProcess) -> None:
    async with in_process({"APP_DRILL_ENDPOINT": "1"}) as client:
        assert (await client.get("/api/batches/B-1001")).status_code == 200
        set_ = await client.post(
            "/drill/faults", json={"error_rate": 1.0, "latency_ms": 0}, headers=drill_user()
        )
        assert set_.status_code == 200
        assert (await client.get("/api/batches/B-1001")).status_code == 503
        assert (await client.get("/healthz/ready")).status_code == 200  # health unaffected
        bad = await client.post("/drill/faults", json={"error_rate": 2}, headers=drill_user())
        assert bad.status_code == 422
        await client.post("/drill/faults", json={"error_rate": 0}, headers=drill_user())
        assert (await client.get("/api/batches/B-1001")).status_code == 200


DRILL = {"APP_DRILL_ENDPOINT": "1"}
BREAK_IT = {"error_rate": 1.0, "latency_ms": 0, "ready_fail": True}


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 401, "NOT_AUTHENTICATED"),  # no credential
        (as_user("quinn", "not-her-password"), 401, "NOT_AUTHENTICATED"),  # a wrong one
        ({"Authorization": "Bearer quinn.9999999999.forged"}, 401, "NOT_AUTHENTICATED"),
        (as_user("olivia"), 403, "NOT_PERMITTED"),  # operator: signed in, not privileged
        (as_user("sam"), 403, "NOT_PERMITTED"),  # supervisor: neither
    ],
    ids=["no-credential", "wrong-password", "forged-token", "operator", "supervisor"],
)
async def test_a_drill_without_a_qa_user_is_refused_and_changes_nothing(
    in_process: InProcess, data_dir: Path, headers: dict[str, str], status: int, code: str
) -> None:
    """Reads are open in local (`open_reads`), drills never are."""
    app = create_app(Settings.from_env({**DRILL, "APP_DATA_DIR": str(data_dir)}))
    faults = app.state.faults
    async with in_process(app=app) as client:
        refused = await client.post("/drill/faults", json=BREAK_IT, headers=headers)
        batch = await client.get("/api/batches/B-1001")
        ready = await client.get("/healthz/ready")
    assert refused.status_code == status
    assert refused.json()["code"] == code
    assert ("WWW-Authenticate" in refused.headers) is (status == 401)
    if status == 403:
        assert "may not run drills: that needs the role qa" in refused.json()["detail"]
    assert app.state.faults is faults  # nothing was set
    assert (batch.status_code, ready.status_code) == (200, 200)


async def test_a_qa_user_runs_the_drill_with_a_password_or_a_session_token(
    in_process: InProcess,
) -> None:
    async with in_process(DRILL) as client:
        by_password = await client.post(
            "/drill/faults", json={"error_rate": 1.0}, headers=drill_user()
        )
        broken = await client.get("/api/batches/B-1001")
        session = await client.post(
            "/api/session", json={"user_id": "quinn", "password": "demo-quinn"}
        )
        assert session.status_code == 503  # the session API is an API: the drill broke it too
        await client.post("/drill/faults", json={}, headers=drill_user())
        session = await client.post(
            "/api/session", json={"user_id": "quinn", "password": "demo-quinn"}
        )
        bearer = {"Authorization": f"Bearer {session.json()['token']}"}
        by_token = await client.post("/drill/faults", json={"latency_ms": 1}, headers=bearer)
    assert by_password.status_code == 200
    assert broken.status_code == 503
    assert by_token.json() == {"error_rate": 0.0, "latency_ms": 1, "ready_fail": False}


async def test_the_drill_endpoint_off_is_404_even_for_a_qa_user(in_process: InProcess) -> None:
    async with in_process() as client:
        answer = await client.post("/drill/faults", json=BREAK_IT, headers=drill_user())
    assert answer.status_code == 404
