"""Readiness checks the database: it must answer, in time, with a schema that fits; a database
that cannot be reached at start-up stops the process with exit code 3."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

from pharma_kit import DB_FILE
from pharma_manufacturing.main import create_app
from pharma_manufacturing.settings import Settings
from pharma_manufacturing.storage.database import Database, sqlite_url
from pharma_manufacturing.storage.readiness import DatabaseReadiness
from pharma_manufacturing.storage.schema import SchemaGate

if TYPE_CHECKING:
    from collections.abc import Callable

    from conftest import AppProcess, InProcess


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
        broken = await client.get("/healthz/ready")
        live = await client.get("/healthz/live")
    assert (healthy.status_code, healthy.json()) == (200, {"status": "ready"})
    assert broken.status_code == 503
    assert broken.json()["status"] == "not_ready"
    assert broken.json()["reason"].startswith(
        "the database does not answer: file is not a database"
    )
    assert live.status_code == 200  # the process is fine: no restart, just no traffic


async def test_readiness_gives_up_on_a_database_that_hangs(data_dir: Path) -> None:
    class HangingReadiness(DatabaseReadiness):
        def check(self) -> str | None:
            time.sleep(0.5)
            return None

    database = Database(sqlite_url(data_dir))
    probe = HangingReadiness(database, SchemaGate(), timeout_s=0.1)
    started = time.perf_counter()
    reason = await probe.problem()
    assert reason == "the database did not answer within 0.1 s"
    assert time.perf_counter() - started < 0.4
    database.dispose()


async def test_a_database_without_schema_is_not_ready(in_process: InProcess) -> None:
    async with in_process({"APP_MIGRATE_ON_START": "false"}) as client:
        ready = await client.get("/healthz/ready")
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
