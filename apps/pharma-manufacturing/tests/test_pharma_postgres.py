"""The app on a real PostgreSQL 15 (tests/pg_server.py at the repository root), one database per
test: migrations, the batch read, a signed step, writers racing, the append-only audit trail,
expand/contract with the previous version running beside this one, the line status, and two
versions starting together. The SQLite tests prove the same on SQLite; these run the
PostgreSQL code paths (the advisory locks, the PL/pgSQL triggers, the psycopg driver)."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from ops_kit.testing import is_ready, readiness_until
from pharma_kit import (
    as_user,
    in_readiness_check,
    signature,
    step_body,
    write_headers,
)
from pharma_manufacturing.main import create_app
from pharma_manufacturing.services.seed import seed_demo_data
from pharma_manufacturing.services.signatures import SignatureSeal
from pharma_manufacturing.settings import Settings
from pharma_manufacturing.storage.database import Database
from pharma_manufacturing.storage.schema import migrate
from pharma_manufacturing.storage.tables import (
    SCHEMA_REVISION,
    audit_trail,
    metadata,
    signatures,
)
from sqlalchemy import Connection, create_engine, delete, event, func, inspect, select, text, update
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from test_migrations import old_batches, old_version_reads_steps, old_version_records_a_step

ROOT = Path(__file__).resolve().parents[3]  # the repository: tests/pg_server.py lives there
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.pg_server import PostgresServer, serve_or_skip  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Callable

    from ops_kit.testing import AppProcess, InProcess

STEPS = "/api/batches/B-1001/steps"
APPEND_ONLY_TRIGGERS = {
    f"{table}_{name}"
    for table in ("audit_trail", "signatures")
    for name in ("no_change", "no_truncate")
}


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    yield from serve_or_skip()


@pytest.fixture
def database_url(postgres: PostgresServer) -> str:
    """A fresh, empty database for this test, in the dialect+driver spelling the app takes."""
    url = postgres.create_database("pharma")
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


@pytest.fixture
def on_postgres(in_process: InProcess, database_url: str) -> InProcess:
    """`in_process`, with APP_DATABASE_URL on this test's PostgreSQL database."""

    def serve(env: dict[str, str] | None = None, **options: Any) -> Any:
        return in_process({"APP_DATABASE_URL": database_url, **(env or {})}, **options)

    return serve


@contextmanager
def sql(url: str) -> Iterator[Connection]:
    """A connection in a transaction, committed at the end: another process, or a tamperer."""
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            yield connection
    finally:
        engine.dispose()


def revision_of(url: str) -> list[str]:
    with sql(url) as connection:
        return list(connection.execute(text("SELECT version_num FROM alembic_version")).scalars())


# --------------------------------------------------------------------------- schema


def test_migrations_build_the_schema_the_code_queries(database_url: str) -> None:
    database = Database(database_url)
    assert database.dialect == "postgresql"
    assert migrate(database) == SCHEMA_REVISION
    assert migrate(database) == SCHEMA_REVISION  # again: nothing to do
    with database.reading() as connection:
        inspector = inspect(connection)
        for table in metadata.sorted_tables:
            present = {column["name"] for column in inspector.get_columns(table.name)}
            assert present == set(table.columns.keys()), table.name
        triggers = set(
            connection.execute(text("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal"))
            .scalars()
            .all()
        )
    database.dispose()
    assert triggers == APPEND_ONLY_TRIGGERS


# --------------------------------------------------------------------------- records


async def test_batch_read_and_a_signed_step(on_postgres: InProcess, database_url: str) -> None:
    app = create_app(Settings.from_env({"APP_DATABASE_URL": database_url}))
    statements: list[str] = []

    def count(*args: Any) -> None:
        if not in_readiness_check():  # the background refresher's query is not the read's
            statements.append(args[2])

    async with on_postgres(app=app) as client:
        ready = await client.get("/healthz/ready")
        seeded = await client.get("/api/batches/B-1001")
        recorded = await client.post(STEPS, json=step_body(), headers=write_headers("k-1"))
        retry = await client.post(STEPS, json=step_body(), headers=write_headers("k-1"))
        verified = await client.get(f"{STEPS}/1/signatures/verify")
        event.listen(app.state.database.engine, "before_cursor_execute", count)
        batch = await client.get("/api/batches/B-1001")
        event.remove(app.state.database.engine, "before_cursor_execute", count)
        record = (await client.get("/api/batches/B-1001/record")).json()
    assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
    assert seeded.json()["product"] == "Amoxicillin 500 mg capsules"
    assert recorded.status_code == 201, recorded.text
    assert (retry.status_code, retry.headers["Idempotent-Replay"]) == (200, "true")
    assert retry.json() == recorded.json()
    [shown] = recorded.json()["signatures"]
    assert (shown["printed_name"], shown["meaning"], shown["status"]) == (
        "Olivia Novak",
        "performed",
        "bound",
    )
    assert shown["signed_at"].endswith("Z")
    assert verified.status_code == 200 and verified.json()["signed"] is True
    assert [(s["sequence"], s["parameters"]) for s in batch.json()["steps"]] == [
        (1, {"temperature_c": 41.5})
    ]
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) == 2, statements
    assert [s["status"] for s in record["steps"][0]["signatures"]] == ["bound"]


async def test_concurrent_steps_on_one_batch_get_distinct_sequences(
    on_postgres: InProcess,
) -> None:
    """Two writers race for the next sequence number; the loser retries, nobody gets a 500."""
    async with on_postgres() as client:
        answers = await asyncio.gather(
            *(
                client.post(STEPS, json=step_body(f"step-{n}"), headers=write_headers(f"k-{n}"))
                for n in range(6)
            )
        )
        batch = (await client.get("/api/batches/B-1001")).json()
    assert [answer.status_code for answer in answers] == [201] * 6
    assert sorted(s["sequence"] for s in batch["steps"]) == [1, 2, 3, 4, 5, 6]


async def test_concurrent_consumptions_never_take_more_than_a_lot_holds(
    on_postgres: InProcess,
) -> None:
    lot = {"lot_id": "ML-RACE-1", "material": "Magnesium stearate", "quantity": 10, "unit": "kg"}
    async with on_postgres() as client:
        registered = await client.post("/api/lots", json=lot, headers=as_user("olivia"))
        answers = await asyncio.gather(
            *(
                client.post(
                    "/api/batches/B-1001/consumptions",
                    json={"lot_id": "ML-RACE-1", "quantity": 4},
                    headers=as_user("olivia"),
                )
                for _ in range(5)
            )
        )
        record = (await client.get("/api/batches/B-1001/record")).json()
    assert registered.status_code == 201
    assert sorted(answer.status_code for answer in answers) == [201, 201, 409, 409, 409]
    taken = [c["quantity"] for c in record["consumed_lots"] if c["lot_id"] == "ML-RACE-1"]
    assert taken == [4, 4]


async def test_release_and_line_status(on_postgres: InProcess, database_url: str) -> None:
    async with on_postgres() as client:
        seeded = (await client.get("/api/line/status")).json()
        await client.post(STEPS, json=step_body(), headers=write_headers("k-1"))
        released = await client.post(
            "/api/batches/B-1001/release",
            json={
                "signature": signature("quinn", "approved"),
                "product_lot": {"lot_id": "PL-1001-A", "quantity": 98000, "unit": "capsules"},
            },
            headers=as_user("quinn"),
        )
        after_release = (await client.get("/api/line/status")).json()
        with sql(database_url) as connection:  # another version starts a batch
            connection.execute(
                old_batches.insert().values(
                    batch_id="B-0999",
                    product="Cefalexin 250 mg capsules",
                    status="in_progress",
                    started_at=text("now() AT TIME ZONE 'UTC' - interval '100 hours'"),
                    created_by="sam",
                    released_at=None,
                )
            )
        last = await client.get("/api/line/status")
    assert [b["batch_id"] for b in seeded["batches_in_progress"]] == ["B-1002", "B-1001"]
    assert seeded["checked_at"].endswith("Z")
    assert released.status_code == 200, released.text
    assert released.json()["approvals"][0]["status"] == "bound"
    assert [b["batch_id"] for b in after_release["batches_in_progress"]] == ["B-1002"]
    assert last.status_code == 200
    assert [b["batch_id"] for b in last.json()["batches_in_progress"]] == ["B-0999", "B-1002"]


# --------------------------------------------------------------------------- append-only


@pytest.mark.parametrize("table", [audit_trail, signatures], ids=lambda t: t.name)
async def test_the_database_refuses_update_delete_and_truncate(
    on_postgres: InProcess, database_url: str, table: Any
) -> None:
    async with on_postgres() as client:  # migrated and seeded: both tables hold rows
        await client.get("/healthz/ready")
    engine = create_engine(database_url)
    with engine.connect() as connection:
        before = connection.execute(select(func.count()).select_from(table)).scalar_one()
    attempts = [update(table).values(user_id="mallory"), delete(table), text(f"TRUNCATE {table}")]
    for statement in attempts:
        with (
            pytest.raises(DBAPIError, match=f"{table.name} is append-only"),
            engine.begin() as connection,
        ):
            connection.execute(statement)
    with engine.connect() as connection:
        after = connection.execute(select(func.count()).select_from(table)).scalar_one()
        users = set(connection.execute(select(table.c.user_id)).scalars())
    engine.dispose()
    assert before > 0
    assert after == before
    assert "mallory" not in users


# --------------------------------------------------------------------------- expand/contract


async def test_previous_version_reads_and_writes_a_database_migrated_to_head(
    on_postgres: InProcess, database_url: str
) -> None:
    async with on_postgres() as client:  # this version migrates to 0002 and seeds
        with sql(database_url) as connection:  # the previous version, running next to it
            old_version_records_a_step(connection, "B-1001", "old-1")
        new_step = step_body("granulation") | {"equipment_id": "GR-02"}
        recorded = await client.post(STEPS, json=new_step, headers=write_headers("new-1"))
        batch = (await client.get("/api/batches/B-1001")).json()
        with sql(database_url) as connection:
            seen_by_old = old_version_reads_steps(connection, "B-1001")
            old_version_records_a_step(connection, "B-1001", "old-2")
        after = (await client.get("/api/batches/B-1001")).json()
    assert revision_of(database_url) == [SCHEMA_REVISION]
    assert recorded.status_code == 201, recorded.text
    assert [(s["sequence"], s["equipment_id"]) for s in batch["steps"]] == [(1, None), (2, "GR-02")]
    assert seen_by_old == [(1, "blending"), (2, "granulation")]
    assert [s["step"] for s in after["steps"]] == ["blending", "granulation", "blending"]


async def test_older_schema_waits_for_its_migration_then_turns_ready(
    on_postgres: InProcess, database_url: str
) -> None:
    database = Database(database_url)
    migrate(database, "0001")  # the database the previous version left, with its records
    with sql(database_url) as connection:
        connection.execute(
            old_batches.insert().values(
                batch_id="B-1001",
                product="Amoxicillin 500 mg capsules",
                status="in_progress",
                started_at=datetime(2026, 1, 5, 6, 0),
                created_by="sam",
                released_at=None,
            )
        )
        old_version_records_a_step(connection, "B-1001", "old-1")
    async with on_postgres({"APP_MIGRATE_ON_START": "0"}) as client:
        refused = await client.get("/healthz/ready")
        migrate(database)  # an operator runs the migrations: the version turns ready by itself
        accepted = await readiness_until(client, is_ready)  # at the next background refresh
        batch = (await client.get("/api/batches/B-1001")).json()
    database.dispose()
    assert refused.status_code == 503
    assert "revision 0001" in refused.json()["reason"]
    assert accepted.status_code == 200
    assert revision_of(database_url) == [SCHEMA_REVISION]
    assert [(s["step"], s["equipment_id"]) for s in batch["steps"]] == [("blending", None)]
    assert batch["created_by"] == "sam"


async def test_newer_schema_is_left_alone_unless_it_dropped_what_this_version_uses(
    on_postgres: InProcess, database_url: str
) -> None:
    async with on_postgres() as client:
        await client.get("/healthz/ready")
    with sql(database_url) as connection:  # a later release's expand migration ran
        connection.execute(text("ALTER TABLE batches ADD COLUMN line_id VARCHAR(16)"))
        connection.execute(text("UPDATE alembic_version SET version_num = '0003'"))
    async with on_postgres() as client:  # migrations on: they must leave a newer schema alone
        ready = await client.get("/healthz/ready")
        write = await client.post(STEPS, json=step_body(), headers=write_headers("k-1"))
    with sql(database_url) as connection:  # a contract step taken while this version still runs
        connection.execute(text("ALTER TABLE steps DROP COLUMN equipment_id"))
        connection.execute(text("UPDATE alembic_version SET version_num = '0004'"))
    async with on_postgres() as client:
        contracted = await client.get("/healthz/ready")
    assert (ready.status_code, write.status_code) == (200, 201)
    assert revision_of(database_url) == ["0004"]
    assert contracted.status_code == 503
    assert "steps.equipment_id" in contracted.json()["reason"]


def test_two_versions_seeding_at_the_same_moment_seed_once(database_url: str) -> None:
    """Both find no demo data, then both write it: the second must wait, then see it."""
    versions = [Database(database_url) for _ in range(2)]
    migrate(versions[0])
    start = threading.Barrier(len(versions))
    outcomes: list[object] = []

    def seed(database: Database) -> None:
        start.wait()
        try:
            outcomes.append(seed_demo_data(database, SignatureSeal(b"k" * 32), None))
        except SQLAlchemyError as error:  # the app would exit 3: "database unavailable"
            outcomes.append(type(error).__name__)

    threads = [threading.Thread(target=seed, args=(database,)) for database in versions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for database in versions:
        database.dispose()
    assert sorted(outcomes, key=str) == [False, True]


def test_two_versions_starting_together_migrate_and_seed_once(
    app_process: Callable[[dict[str, str]], AppProcess], database_url: str
) -> None:
    env = {"APP_DATABASE_URL": database_url}
    stable = app_process({**env, "APP_VERSION": "1.0.0", "APP_SLOT": "stable"})
    canary = app_process({**env, "APP_VERSION": "1.1.0", "APP_SLOT": "canary"})
    stable.wait_ready()
    canary.wait_ready()
    answers = [httpx.get(f"{app.base_url}/api/batches/B-1001") for app in (stable, canary)]
    with sql(database_url) as connection:
        batches = connection.execute(text("SELECT COUNT(*) FROM batches")).scalar_one()
    assert [answer.status_code for answer in answers] == [200, 200]
    assert revision_of(database_url) == [SCHEMA_REVISION]
    assert batches == 3


def test_unreachable_server_at_start_exits_3_naming_it_without_the_password(
    app_process: Callable[[dict[str, str]], AppProcess], postgres: PostgresServer
) -> None:
    port = postgres.port + 1  # nothing listens there
    url = f"postgresql+psycopg://pharma:s3cret@127.0.0.1:{port}/pharma"
    app = app_process({"APP_DATABASE_URL": url})
    assert app.process.wait(timeout=30) == 3, app.log()
    lines = [json.loads(line) for line in app.log().splitlines() if line.startswith("{")]
    [critical] = [line["msg"] for line in lines if line["level"] == "critical"]
    assert critical.startswith(
        f"database unavailable at start-up (postgresql+psycopg://pharma:***@127.0.0.1:{port}/"
        "pharma): connection failed"
    )
    assert critical.endswith("; the process exits 3")
    assert "s3cret" not in app.log()
