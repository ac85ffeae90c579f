"""finance-trading readiness: with APP_DATA_DIR, whether the shared order ledger answers a read.

The verdict is ops_kit's ReadinessMonitor's, refreshed in the background (its own tests are in
apps/ops-kit; the ready_fail drill and draining are in the contract test_finance_app.py runs).
Probes only read it, so a change shows within about a second: the tests poll for it with
deadlines of many seconds and never assert how fast it came, so that they hold on a machine
whose cores are all busy.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from finance_trading.main import create_app
from finance_trading.services.ledger import DB_FILE, SqliteOrderLedger
from finance_trading.settings import Settings
from ops_kit.testing import (
    is_not_ready,
    probe_while_checking,
    readiness_until,
    refresher_tasks,
)

if TYPE_CHECKING:
    from ops_kit.testing import InProcess


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
        assert check_threads, "the first check runs before start-up completes"
        await probe_while_checking(client, check_threads)
    assert not refresher_tasks()


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
