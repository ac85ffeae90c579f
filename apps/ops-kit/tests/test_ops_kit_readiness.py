"""ReadinessMonitor: a blocking check refreshed in the background, one at a time, given up on
after its timeout, stale when not refreshed; probes only read the stored verdict."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

from ops_kit.readiness import CHECK_THREAD_NAME, ReadinessMonitor
from ops_kit.testing import json_log_lines, refresher_tasks


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
        assert monitor.checks_started == 1
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


async def test_the_check_runs_in_its_own_thread_never_the_loop() -> None:
    threads: list[str] = []
    monitor = ReadinessMonitor(lambda: threads.append(threading.current_thread().name))
    await monitor.refresh()
    assert threads == [CHECK_THREAD_NAME]


async def test_the_refresher_keeps_checking_and_stops_with_its_block() -> None:
    calls: list[None] = []
    monitor = ReadinessMonitor(lambda: calls.append(None), interval_s=0.01)
    async with monitor.running():
        assert len(calls) == 1  # the first check is done before the block starts
        deadline = time.monotonic() + 15
        while len(calls) < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert len(calls) >= 3
    assert not refresher_tasks()
    stopped_at = len(calls)
    await asyncio.sleep(0.1)
    assert len(calls) == stopped_at


async def test_a_change_of_verdict_is_logged_once_on_the_apps_logger() -> None:
    verdicts = iter(["the queue does not answer", "the queue does not answer", None])
    app_logger = logging.getLogger("my_app.readiness")
    monitor = ReadinessMonitor(lambda: next(verdicts), subject="the queue", logger=app_logger)
    with json_log_lines("my_app.readiness") as lines:
        for _ in range(3):
            await monitor.refresh()
    assert [(line["logger"], line["level"], line["msg"]) for line in lines] == [
        ("my_app.readiness", "warning", "not ready"),
        ("my_app.readiness", "info", "ready"),
    ]
    assert lines[0]["reason"] == "the queue does not answer"
    assert lines[1]["check"] == "the queue"
