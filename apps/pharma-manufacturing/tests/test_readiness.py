"""Readiness checks the database: it must answer, in time, with a schema that fits; a database
that cannot be reached at start-up stops the process with exit code 3.

Probes read a verdict refreshed in the background (ops_kit's ReadinessMonitor, tested in
apps/ops-kit; the ready_fail drill and draining are in the contract test_pharma_app.py runs),
so a change in the database shows within about a second: the tests poll for it with deadlines
of many seconds and never assert how fast it came, so that they hold on a machine whose cores
are all busy.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ops_kit.testing import (
    is_not_ready,
    probe_while_checking,
    readiness_until,
    refresher_tasks,
)
from pharma_kit import DB_FILE
from pharma_manufacturing.main import create_app
from pharma_manufacturing.settings import Settings
from sqlalchemy import event

if TYPE_CHECKING:
    from collections.abc import Callable

    from ops_kit.testing import AppProcess, InProcess


async def test_probes_read_the_cached_verdict_and_never_query_the_database(
    in_process: InProcess, data_dir: Path
) -> None:
    app = create_app(Settings.from_env({"APP_DATA_DIR": str(data_dir)}))
    query_threads: list[int] = []

    @event.listens_for(app.state.database.engine, "before_cursor_execute")
    def record(*_: Any) -> None:
        query_threads.append(threading.get_ident())

    async with in_process(app=app) as client:
        await probe_while_checking(client, query_threads)
    assert not refresher_tasks(), "the refresher outlived the app"


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


async def test_a_database_without_schema_is_not_ready(in_process: InProcess) -> None:
    async with in_process({"APP_MIGRATE_ON_START": "false"}) as client:
        ready = await client.get("/healthz/ready")  # checked once before start-up completes
    assert ready.status_code == 503
    assert "no schema" in ready.json()["reason"]


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
