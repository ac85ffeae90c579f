"""finance-trading: operational endpoints, quotes, drill faults, and the SIGTERM drain."""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import httpx
from finance_kit import drill_key, key, order

if TYPE_CHECKING:  # conftest is pytest's, so import it for the type names only
    from conftest import AppProcess, InProcess

StartApp = Callable[[dict[str, str]], "AppProcess"]


async def test_health_version_and_metrics(in_process: InProcess) -> None:
    env = {"APP_VERSION": "1.2.3", "APP_SLOT": "canary"}
    async with in_process(env) as client:
        assert (await client.get("/healthz/live")).json() == {"status": "live"}
        ready = await client.get("/healthz/ready")
        assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
        assert (await client.get("/version")).json() == {
            "app": "finance-trading",
            "version": "1.2.3",
            "slot": "canary",
        }
        await client.get("/api/quote/MSFT")
        metrics = await client.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    assert (
        'http_requests_total{method="GET",path="/api/quote/{symbol}",status="200"} 1.0'
        in metrics.text
    )
    assert 'http_request_duration_seconds_count{method="GET",path="/healthz/live"} 1.0' in (
        metrics.text
    )


async def test_version_defaults_to_package_version_and_no_slot(in_process: InProcess) -> None:
    async with in_process() as client:
        assert (await client.get("/version")).json() == {
            "app": "finance-trading",
            "version": "1.0.0",
            "slot": None,
        }


async def test_ready_is_starting_before_startup(in_process: InProcess) -> None:
    async with in_process(started=False) as client:
        ready = await client.get("/healthz/ready")
        assert (ready.status_code, ready.json()) == (503, {"status": "starting"})
        assert (await client.get("/healthz/live")).status_code == 200


async def test_quote_is_deterministic_and_unknown_symbol_is_404(in_process: InProcess) -> None:
    async with in_process() as client:
        first = await client.get("/api/quote/aapl")
        second = await client.get("/api/quote/AAPL")
        unknown = await client.get("/api/quote/NOPE")
    assert first.json() == second.json()
    assert first.json() == {"symbol": "AAPL", "bid": "189.98", "ask": "190.02", "currency": "USD"}
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "UNKNOWN_SYMBOL"
    assert "NOPE" in unknown.json()["error"]["message"]


async def test_error_rate_one_fails_api_but_not_health(in_process: InProcess) -> None:
    async with in_process({"APP_FAULT_ERROR_RATE": "1.0"}) as client:
        api = [(await client.get("/api/quote/AAPL")).status_code for _ in range(5)]
        submit = await client.post("/api/orders", json=order(), headers=key())
        graphql = await client.post(
            "/graphql", json={"query": "{ orders { orderId } }"}, headers=key()
        )
        health = [
            (await client.get(path)).status_code
            for path in ("/healthz/live", "/healthz/ready", "/version", "/metrics")
        ]
        metrics = (await client.get("/metrics")).text
    assert api == [503] * 5
    assert (submit.status_code, graphql.status_code) == (503, 503)
    assert health == [200] * 4
    assert 'path="/api/quote/{symbol}",status="503"} 5.0' in metrics


async def test_error_rate_half_fails_exactly_half_of_ten(in_process: InProcess) -> None:
    async with in_process({"APP_FAULT_ERROR_RATE": "0.5"}) as client:
        statuses = [(await client.get("/api/quote/AAPL")).status_code for _ in range(10)]
    assert statuses.count(503) == 5
    assert statuses.count(200) == 5


async def test_latency_fault_delays_api_only(in_process: InProcess) -> None:
    async with in_process({"APP_FAULT_LATENCY_MS": "1000"}) as client:
        started = time.perf_counter()
        assert (await client.get("/api/quote/AAPL")).status_code == 200
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
    app = app_process({"APP_FAULT_CRASH_ON_START": "true"})
    assert app.process.wait(timeout=30) == 3, app.log()
    assert "injected fault APP_FAULT_CRASH_ON_START" in app.log()


def test_sigterm_drains_then_exits_zero(app_process: StartApp) -> None:
    app = app_process({"APP_FAULT_LATENCY_MS": "1500", "APP_DRAIN_DELAY_S": "0.5"})
    app.wait_ready()
    in_flight: dict[str, httpx.Response] = {}
    slow = threading.Thread(
        target=lambda: in_flight.update(
            response=httpx.get(f"{app.base_url}/api/quote/AAPL", timeout=10)
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
        answer = await client.post("/drill/faults", json={"error_rate": 1.0}, headers=drill_key())
        assert answer.status_code == 404


async def test_drill_endpoint_changes_faults_of_a_running_process(in_process: InProcess) -> None:
    async with in_process({"APP_DRILL_ENDPOINT": "1"}) as client:
        assert (await client.get("/api/quote/AAPL")).status_code == 200
        set_ = await client.post(
            "/drill/faults", json={"error_rate": 1.0, "latency_ms": 0}, headers=drill_key()
        )
        assert set_.status_code == 200
        assert (await client.get("/api/quote/AAPL")).status_code == 503
        assert (await client.get("/healthz/ready")).status_code == 200  # health unaffected
        bad = await client.post("/drill/faults", json={"error_rate": 2}, headers=drill_key())
        assert bad.status_code == 422
        await client.post("/drill/faults", json={"error_rate": 0}, headers=drill_key())
        assert (await client.get("/api/quote/AAPL")).status_code == 200
