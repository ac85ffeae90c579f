"""finance-trading readiness: a verdict refreshed in the background, the ready_fail drill.

With APP_DATA_DIR the verdict says whether the shared order ledger answers a read. Probes only
read it, so a change shows within about a second: the tests poll for it with deadlines of many
seconds and never assert how fast it came, so that they hold on a machine whose cores are all
busy.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from finance_kit import drill_key, is_not_ready, key, order, readiness_until
from finance_trading.main import create_app
from finance_trading.readiness import ReadinessMonitor
from finance_trading.services.ledger import DB_FILE, SqliteOrderLedger
from finance_trading.settings import Settings

if TYPE_CHECKING:
    from conftest import AppProcess, InProcess

StartApp = Callable[[dict[str, str]], "AppProcess"]
DRILL = {"APP_DRILL_ENDPOINT": "1"}


async def test_probes_read_the_cached_verdict_and_never_touch_the_ledger(
    in_process: InProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    check_threads: list[int] = []
    real_problem = SqliteOrderLedger.problem

    def recorded_problem(ledger: SqliteOrderLedger) -> str | None:
        check_threads.append(threading.get_ident())
        return real_problem(ledger)

    monkeypatch.setattr(SqliteOrderLedger, "problem", recorded_problem)
    app = create_app(Settings.from_env({"APP_DATA_DIR": str(tmp_path)}))
    async with in_process(app=app) as client:
        loop_thread = threading.get_ident()  # where the app serves requests
        probes = await asyncio.gather(*(client.get("/healthz/ready") for _ in range(200)))
        checks_while_probing = list(check_threads)
        deadline = time.monotonic() + 15
        while len(check_threads) <= len(checks_while_probing) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    assert {probe.status_code for probe in probes} == {200}
    assert checks_while_probing, "the first check runs before start-up completes"
    assert loop_thread not in checks_while_probing  # refresher threads only, never a probe
    assert len(check_threads) > len(checks_while_probing), "the refresher never ran again"
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "readiness-refresh"]


async def test_readiness_turns_not_ready_when_the_ledger_is_gone(
    in_process: InProcess, tmp_path: Path
) -> None:
    async with in_process({"APP_DATA_DIR": str(tmp_path)}) as client:
        healthy = await client.get("/healthz/ready")
        for leftover in tmp_path.glob(f"{DB_FILE}*"):  # the file and its -wal and -shm
            leftover.unlink()
        gone = await readiness_until(client, is_not_ready)
        live = await client.get("/healthz/live")
    assert (healthy.status_code, healthy.json()) == (200, {"status": "ready"})
    assert gone.status_code == 503
    assert gone.json() == {
        "status": "not_ready",
        "reason": "the order ledger does not answer: unable to open database file",
    }
    assert live.status_code == 200  # the process is fine: no restart, just no traffic
    assert not list(tmp_path.glob(f"{DB_FILE}*")), "the check must not re-create the ledger"


async def test_a_check_that_hangs_is_given_up_on_and_never_piles_up() -> None:
    release = threading.Event()
    calls: list[None] = []

    def hanging_check() -> str | None:
        calls.append(None)
        release.wait(timeout=30)
        return None

    monitor = ReadinessMonitor(hanging_check, subject="the order ledger", timeout_s=0.1)
    try:
        first = await monitor.refresh()
        second = await monitor.refresh()  # waits for the same stuck check, starts no other
        assert first == second == "the order ledger did not answer within 0.1 s"
        assert len(calls) == 1
    finally:
        release.set()
    deadline = time.monotonic() + 15
    while await monitor.refresh() is not None and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert monitor.problem() is None


async def test_a_verdict_not_refreshed_for_two_seconds_is_stale() -> None:
    now = [100.0]
    monitor = ReadinessMonitor(lambda: None, clock=lambda: now[0])
    await monitor.refresh()
    now[0] += 1.9
    fresh = monitor.problem()
    now[0] += 0.5
    stale = monitor.problem()
    assert fresh is None
    assert stale == "readiness check stale: last refreshed 2.4 s ago"


async def test_draining_shows_at_once(in_process: InProcess) -> None:
    app = create_app(Settings.from_env({}))
    async with in_process(app=app) as client:
        before = await client.get("/healthz/ready")
        app.state.lifecycle.start_draining()  # what SIGTERM does
        draining = await client.get("/healthz/ready")
    assert before.status_code == 200
    assert (draining.status_code, draining.json()) == (503, {"status": "draining"})


async def test_drill_ready_fail_fails_readiness_only_and_toggles_back(
    in_process: InProcess,
) -> None:
    async with in_process(DRILL) as client:
        on = await client.post("/drill/faults", json={"ready_fail": True}, headers=drill_key())
        failing = await client.get("/healthz/ready")
        quote = await client.get("/api/quote/AAPL")
        submitted = await client.post("/api/orders", json=order(), headers=key())
        off = await client.post("/drill/faults", json={"ready_fail": False}, headers=drill_key())
        back = await client.get("/healthz/ready")
    assert (on.status_code, on.json()) == (
        200,
        {"error_rate": 0.0, "latency_ms": 0, "ready_fail": True},
    )
    assert (failing.status_code, failing.json()) == (
        503,
        {"status": "not_ready", "reason": "drill: readiness failing"},
    )
    assert (quote.status_code, submitted.status_code) == (200, 201)  # the API keeps answering
    assert off.json()["ready_fail"] is False
    assert (back.status_code, back.json()) == (200, {"status": "ready"})


async def test_drill_ready_fail_takes_booleans_only(in_process: InProcess) -> None:
    async with in_process(DRILL) as client:
        refused = await client.post("/drill/faults", json={"ready_fail": 1}, headers=drill_key())
        ready = await client.get("/healthz/ready")
    assert refused.status_code == 422
    assert ready.status_code == 200


async def test_drill_ready_fail_is_404_without_the_drill_endpoint(in_process: InProcess) -> None:
    async with in_process() as client:
        answer = await client.post("/drill/faults", json={"ready_fail": True}, headers=drill_key())
        ready = await client.get("/healthz/ready")
    assert answer.status_code == 404
    assert ready.status_code == 200


def test_a_real_process_serves_the_drill_and_does_not_log_probes(app_process: StartApp) -> None:
    app = app_process(DRILL)
    app.wait_ready()
    set_ = httpx.post(
        f"{app.base_url}/drill/faults", json={"ready_fail": True}, headers=drill_key(), timeout=5
    )
    failing = httpx.get(f"{app.base_url}/healthz/ready", timeout=5)
    httpx.post(f"{app.base_url}/drill/faults", json={}, headers=drill_key(), timeout=5)
    app.wait_ready()
    assert set_.json()["ready_fail"] is True
    assert failing.json() == {"status": "not_ready", "reason": "drill: readiness failing"}
    assert _logged_paths(app, until=["/drill/faults"] * 2) == ["/drill/faults"] * 2


def _logged_paths(app: AppProcess, until: list[str]) -> list[str]:
    """The paths of the request log lines, once `until` are logged (or after 10 s)."""
    deadline = time.monotonic() + 10  # a request's line is written just after its answer
    while True:
        lines: list[dict[str, Any]] = [
            json.loads(line) for line in app.log().splitlines() if line.startswith("{")
        ]
        paths = [line["path"] for line in lines if line.get("msg") == "request"]
        if paths == until or time.monotonic() > deadline:
            return paths
        time.sleep(0.05)
