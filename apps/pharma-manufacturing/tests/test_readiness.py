"""Readiness checks the database: it must answer, in time, with a schema that fits; a database
that cannot be reached at start-up stops the process with exit code 3.

Probes read a verdict refreshed in the background (readiness.py), so a change in the database
shows within about a second: the tests poll for it with deadlines of many seconds and never
assert how fast it came, so that they hold on a machine whose cores are all busy.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from pharma_kit import DB_FILE, drill_user, is_not_ready, readiness_until
from pharma_manufacturing.main import create_app
from pharma_manufacturing.readiness import ReadinessMonitor
from pharma_manufacturing.settings import Settings
from sqlalchemy import event

if TYPE_CHECKING:
    from collections.abc import Callable

    from conftest import AppProcess, InProcess

DRILL = {"APP_DRILL_ENDPOINT": "1"}


async def test_probes_read_the_cached_verdict_and_never_query_the_database(
    in_process: InProcess, data_dir: Path
) -> None:
    app = create_app(Settings.from_env({"APP_DATA_DIR": str(data_dir)}))
    query_threads: list[int] = []

    @event.listens_for(app.state.database.engine, "before_cursor_execute")
    def record(*_: Any) -> None:
        query_threads.append(threading.get_ident())

    async with in_process(app=app) as client:
        loop_thread = threading.get_ident()  # where the app serves requests
        probes = await asyncio.gather(*(client.get("/healthz/ready") for _ in range(200)))
        queries_while_probing = list(query_threads)
        deadline = time.monotonic() + 15
        while len(query_threads) <= len(queries_while_probing) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    assert {probe.status_code for probe in probes} == {200}
    assert loop_thread not in queries_while_probing  # refresher threads only, never a probe
    assert len(query_threads) > len(queries_while_probing), "the refresher never ran again"
    assert not _refresher_tasks(), "the refresher outlived the app"


async def test_readiness_turns_not_ready_when_the_database_breaks(
    in_process: InProcess, data_dir: Path
) -> None:
    app = create_app(Settings.from_env({"APP_DATA_DIR": str(data_dir)}))
    async with in_process(app=app) as client:
        healthy = await client.get("/healthz/ready")
        app.state.database.dispose()  # close the pool, then the file turns to garbage
        for leftover in data_dir.iterdir():
            leftover.unlink()
        (data_dir / DB_FILE).write_bytes(b"this is not a database" * 100)
        broken = await readiness_until(client, is_not_ready)
        live = await client.get("/healthz/live")
    assert (healthy.status_code, healthy.json()) == (200, {"status": "ready"})
    assert broken.status_code == 503
    assert broken.json()["status"] == "not_ready"
    assert broken.json()["reason"].startswith(
        "the database does not answer: file is not a database"
    )
    assert live.status_code == 200  # the process is fine: no restart, just no traffic


async def test_a_check_that_hangs_is_given_up_on_and_never_piles_up() -> None:
    release = threading.Event()
    calls: list[None] = []

    def hanging_check() -> str | None:
        calls.append(None)
        release.wait(timeout=30)
        return None

    monitor = ReadinessMonitor(hanging_check, subject="the database", timeout_s=0.1)
    try:
        first = await monitor.refresh()
        second = await monitor.refresh()  # waits for the same stuck check, starts no other
        assert first == second == "the database did not answer within 0.1 s"
        assert monitor.problem() == first
        assert len(calls) == 1
    finally:
        release.set()
    deadline = time.monotonic() + 15
    while await monitor.refresh() is not None and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert monitor.problem() is None  # answered again: ready again


async def test_a_verdict_not_refreshed_for_two_seconds_is_stale() -> None:
    now = [100.0]
    monitor = ReadinessMonitor(lambda: None, clock=lambda: now[0])
    assert monitor.problem() == "readiness not checked yet"
    await monitor.refresh()
    now[0] += 1.9
    fresh = monitor.problem()
    now[0] += 0.5
    stale = monitor.problem()
    await monitor.refresh()
    assert fresh is None
    assert stale == "readiness check stale: last refreshed 2.4 s ago"
    assert monitor.problem() is None


async def test_a_check_that_raises_reads_as_not_ready() -> None:
    def broken_check() -> str | None:
        raise RuntimeError("no driver")

    monitor = ReadinessMonitor(broken_check, subject="the database")
    assert await monitor.refresh() == "the database failed: RuntimeError: no driver"
    assert monitor.problem() == "the database failed: RuntimeError: no driver"


async def test_the_refresher_keeps_checking_and_stops_with_its_block() -> None:
    calls: list[None] = []
    monitor = ReadinessMonitor(lambda: calls.append(None), interval_s=0.01)
    async with monitor.running():
        assert len(calls) == 1  # the first check is done before the block starts
        deadline = time.monotonic() + 15
        while len(calls) < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert len(calls) >= 3
    assert not _refresher_tasks()
    stopped_at = len(calls)
    await asyncio.sleep(0.1)
    assert len(calls) == stopped_at


async def test_draining_shows_at_once(in_process: InProcess, data_dir: Path) -> None:
    app = create_app(Settings.from_env({"APP_DATA_DIR": str(data_dir)}))
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
        on = await client.post("/drill/faults", json={"ready_fail": True}, headers=drill_user())
        failing = await client.get("/healthz/ready")
        api = await client.get("/api/batches/B-1001")
        live = await client.get("/healthz/live")
        off = await client.post("/drill/faults", json={"ready_fail": False}, headers=drill_user())
        back = await client.get("/healthz/ready")
    assert (on.status_code, on.json()) == (
        200,
        {"error_rate": 0.0, "latency_ms": 0, "ready_fail": True},
    )
    assert (failing.status_code, failing.json()) == (
        503,
        {"status": "not_ready", "reason": "drill: readiness failing"},
    )
    assert (api.status_code, live.status_code) == (200, 200)  # the API keeps answering
    assert off.json()["ready_fail"] is False
    assert (back.status_code, back.json()) == (200, {"status": "ready"})


async def test_draining_wins_over_the_ready_fail_drill(
    in_process: InProcess, data_dir: Path
) -> None:
    app = create_app(Settings.from_env({**DRILL, "APP_DATA_DIR": str(data_dir)}))
    async with in_process(app=app) as client:
        await client.post("/drill/faults", json={"ready_fail": True}, headers=drill_user())
        app.state.lifecycle.start_draining()
        ready = await client.get("/healthz/ready")
    assert ready.json() == {"status": "draining"}


async def test_drill_ready_fail_takes_booleans_only(in_process: InProcess) -> None:
    async with in_process(DRILL) as client:
        refused = await client.post(
            "/drill/faults", json={"ready_fail": "false"}, headers=drill_user()
        )
        ready = await client.get("/healthz/ready")
    assert refused.status_code == 422
    assert ready.status_code == 200


async def test_drill_ready_fail_is_404_without_the_drill_endpoint(in_process: InProcess) -> None:
    async with in_process() as client:
        answer = await client.post("/drill/faults", json={"ready_fail": True}, headers=drill_user())
        ready = await client.get("/healthz/ready")
    assert answer.status_code == 404
    assert ready.status_code == 200


async def test_a_database_without_schema_is_not_ready(in_process: InProcess) -> None:
    async with in_process({"APP_MIGRATE_ON_START": "false"}) as client:
        ready = await client.get("/healthz/ready")  # checked once before start-up completes
    assert ready.status_code == 503
    assert "no schema" in ready.json()["reason"]


def test_a_real_process_serves_the_drill_and_does_not_log_probes(
    app_process: Callable[[dict[str, str]], AppProcess],
) -> None:
    app = app_process(DRILL)
    app.wait_ready()
    set_ = httpx.post(
        f"{app.base_url}/drill/faults", json={"ready_fail": True}, headers=drill_user(), timeout=5
    )
    failing = httpx.get(f"{app.base_url}/healthz/ready", timeout=5)
    httpx.post(f"{app.base_url}/drill/faults", json={}, headers=drill_user(), timeout=5)
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


def test_unreachable_database_at_start_exits_3_naming_it(
    app_process: Callable[[dict[str, str]], AppProcess],
) -> None:
    app = app_process({"APP_DATABASE_URL": "sqlite:////nonexistent-folder/pharma.db"})
    assert app.process.wait(timeout=30) == 3, app.log()
    lines = [json.loads(line) for line in app.log().splitlines() if line.startswith("{")]
    critical = [line["msg"] for line in lines if line["level"] == "critical"]
    assert critical == [
        "database unavailable at start-up (sqlite:////nonexistent-folder/pharma.db): "
        "unable to open database file; the process exits 3"
    ]


def _refresher_tasks() -> list[asyncio.Task[Any]]:
    return [task for task in asyncio.all_tasks() if task.get_name() == "readiness-refresh"]
