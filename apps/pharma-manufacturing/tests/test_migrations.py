"""Expand/contract migrations: the previous version (schema 0001) keeps reading and writing a
database this version migrated to head; this version refuses an older schema when it may not
migrate, never downgrades, and keeps working on a newer schema that only added."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
from alembic.config import Config
from alembic.script import ScriptDirectory
from ops_kit.testing import is_ready, readiness_until
from pharma_kit import (
    DB_FILE,
    sql,
    sqlite_engine,
    step_body,
    write_headers,
)
from pharma_manufacturing.storage.database import Database, sqlite_url
from pharma_manufacturing.storage.schema import SCRIPT_LOCATION, migrate
from pharma_manufacturing.storage.tables import KNOWN_REVISIONS, SCHEMA_REVISION, metadata
from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    inspect,
    select,
    text,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from ops_kit.testing import AppProcess, InProcess
    from sqlalchemy import Connection

# The previous version's view of the schema: the columns of revision 0001 and nothing else,
# queried with plain Core inserts and selects, as that version's code does.
OLD = MetaData()
old_batches = Table(
    "batches",
    OLD,
    Column("batch_id", String(32), primary_key=True),
    Column("product", String(200)),
    Column("status", String(16)),
    Column("started_at", DateTime()),
    Column("created_by", String(64)),
    Column("released_at", DateTime()),
)
old_steps = Table(
    "steps",
    OLD,
    Column("id", Integer, primary_key=True),
    Column("batch_id", String(32)),
    Column("sequence", Integer),
    Column("step", String(64)),
    Column("operator", String(64)),
    Column("parameters", Text),
    Column("revision", Integer),
    Column("idempotency_key", String(128)),
    Column("request_sha256", String(64)),
    Column("recorded_at", DateTime()),
)
old_audit = Table(
    "audit_trail",
    OLD,
    Column("id", Integer, primary_key=True),
    Column("at", DateTime()),
    Column("user_id", String(64)),
    Column("action", String(16)),
    Column("table_name", String(64)),
    Column("record_id", String(64)),
    Column("new_value", Text),
    Column("batch_id", String(32)),
)


def old_version_records_a_step(connection: Connection, batch_id: str, key: str) -> int:
    """What version 0001 does for a step: next sequence, INSERT (no equipment_id), audit."""
    last = connection.execute(
        select(old_steps.c.sequence)
        .where(old_steps.c.batch_id == batch_id)
        .order_by(old_steps.c.sequence.desc())
    ).first()
    sequence = (last[0] if last else 0) + 1
    now = datetime.now(UTC).replace(tzinfo=None)
    connection.execute(
        old_steps.insert().values(
            batch_id=batch_id,
            sequence=sequence,
            step="blending",
            operator="olivia",
            parameters=json.dumps({"minutes": 12.0}),
            revision=1,
            idempotency_key=key,
            request_sha256="0" * 64,
            recorded_at=now,
        )
    )
    connection.execute(
        old_audit.insert().values(
            at=now,
            user_id="olivia",
            action="create",
            table_name="steps",
            record_id=f"{batch_id}/{sequence}",
            new_value="{}",
            batch_id=batch_id,
        )
    )
    return sequence


def old_version_reads_steps(connection: Connection, batch_id: str) -> list[tuple[int, str]]:
    query = select(old_steps.c.sequence, old_steps.c.step).where(old_steps.c.batch_id == batch_id)
    return [tuple(row) for row in connection.execute(query.order_by(old_steps.c.sequence))]


def revision_of(data_dir: Path) -> list[str]:
    with sql(data_dir) as connection:
        return list(connection.execute(text("SELECT version_num FROM alembic_version")).scalars())


def test_the_code_needs_the_head_of_the_migration_chain() -> None:
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    scripts = ScriptDirectory.from_config(config)
    chain = [script.revision for script in scripts.walk_revisions()]
    assert scripts.get_heads() == [SCHEMA_REVISION]
    assert tuple(reversed(chain)) == KNOWN_REVISIONS


def test_the_migrated_schema_is_the_one_the_code_queries(data_dir: Path) -> None:
    database = Database(sqlite_url(data_dir))
    assert migrate(database) == SCHEMA_REVISION
    with database.reading() as connection:
        inspector = inspect(connection)
        for table in metadata.sorted_tables:
            present = {column["name"] for column in inspector.get_columns(table.name)}
            assert present == set(table.columns.keys()), table.name
    database.dispose()


async def test_previous_version_reads_and_writes_a_database_migrated_to_head(
    in_process: InProcess, data_dir: Path
) -> None:
    async with in_process() as client:  # this version migrates to 0002 and seeds
        with sql(data_dir) as connection:  # the previous version, running next to it
            old_version_records_a_step(connection, "B-1001", "old-1")
            connection.execute(
                old_batches.insert().values(
                    batch_id="B-0999",
                    product="Cefalexin 250 mg capsules",
                    status="in_progress",
                    started_at=datetime(2026, 1, 5, 6, 0),
                    created_by="sam",
                    released_at=None,
                )
            )
        new_step = step_body("granulation") | {"equipment_id": "GR-02"}
        recorded = await client.post(
            "/api/batches/B-1001/steps", json=new_step, headers=write_headers("new-1")
        )
        batch = (await client.get("/api/batches/B-1001")).json()
        line = (await client.get("/api/line/status")).json()
        with sql(data_dir) as connection:
            seen_by_old = old_version_reads_steps(connection, "B-1001")
            old_version_records_a_step(connection, "B-1001", "old-2")
        after = (await client.get("/api/batches/B-1001")).json()
    assert revision_of(data_dir) == [SCHEMA_REVISION]
    assert recorded.status_code == 201
    assert [(s["sequence"], s["equipment_id"]) for s in batch["steps"]] == [(1, None), (2, "GR-02")]
    assert "B-0999" in [b["batch_id"] for b in line["batches_in_progress"]]
    assert seen_by_old == [(1, "blending"), (2, "granulation")]
    assert [s["step"] for s in after["steps"]] == ["blending", "granulation", "blending"]


async def test_older_schema_with_migrations_disabled_keeps_this_version_not_ready(
    in_process: InProcess, data_dir: Path
) -> None:
    database = Database(sqlite_url(data_dir))
    migrate(database, "0001")  # the database the previous version left
    async with in_process({"APP_MIGRATE_ON_START": "0"}) as client:
        refused = await client.get("/healthz/ready")
        migrate(database)  # an operator runs the migrations: the version turns ready by itself
        accepted = await readiness_until(client, is_ready)  # at the next background refresh
    database.dispose()
    assert refused.status_code == 503
    assert refused.json()["status"] == "not_ready"
    reason = refused.json()["reason"]
    assert "revision 0001" in reason and "needs 0002" in reason
    assert "APP_MIGRATE_ON_START" in reason
    assert accepted.status_code == 200


async def test_older_schema_is_migrated_at_start_and_its_data_kept(
    in_process: InProcess, data_dir: Path
) -> None:
    database = Database(sqlite_url(data_dir))
    migrate(database, "0001")
    database.dispose()
    with sql(data_dir) as connection:
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
    async with in_process() as client:
        ready = await client.get("/healthz/ready")
        batch = (await client.get("/api/batches/B-1001")).json()
    assert ready.status_code == 200
    assert revision_of(data_dir) == [SCHEMA_REVISION]
    assert [(s["step"], s["equipment_id"]) for s in batch["steps"]] == [("blending", None)]
    assert batch["created_by"] == "sam"  # not re-seeded over the existing batch


async def test_newer_schema_is_not_downgraded_and_this_version_keeps_working(
    in_process: InProcess, data_dir: Path
) -> None:
    async with in_process() as client:
        await client.get("/healthz/ready")
    with sql(data_dir) as connection:  # a later release's expand migration ran (then rolled back)
        connection.execute(text("ALTER TABLE batches ADD COLUMN line_id VARCHAR(16)"))
        connection.execute(text("CREATE TABLE batch_notes (id INTEGER PRIMARY KEY, note TEXT)"))
        connection.execute(text("UPDATE alembic_version SET version_num = '0003'"))
    async with in_process() as client:  # migrations on: they must leave a newer schema alone
        ready = await client.get("/healthz/ready")
        read = await client.get("/api/batches/B-1001")
        write = await client.post(
            "/api/batches/B-1001/steps", json=step_body(), headers=write_headers("k-1")
        )
        line = await client.get("/api/line/status")
    assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
    assert (read.status_code, write.status_code, line.status_code) == (200, 201, 200)
    assert revision_of(data_dir) == ["0003"]
    with sqlite_engine(data_dir) as engine:
        inspector = inspect(engine)
        assert "line_id" in {c["name"] for c in inspector.get_columns("batches")}
        assert inspector.has_table("batch_notes")


async def test_newer_schema_that_dropped_a_column_this_version_uses_is_not_ready(
    in_process: InProcess, data_dir: Path
) -> None:
    async with in_process() as client:
        await client.get("/healthz/ready")
    with sql(data_dir) as connection:  # a contract step taken while this version still runs
        connection.execute(text("ALTER TABLE steps DROP COLUMN equipment_id"))
        connection.execute(text("UPDATE alembic_version SET version_num = '0004'"))
    async with in_process() as client:
        ready = await client.get("/healthz/ready")
    assert ready.status_code == 503
    assert "revision 0004" in ready.json()["reason"]
    assert "steps.equipment_id" in ready.json()["reason"]


def test_two_versions_starting_together_migrate_and_seed_once(
    app_process: Callable[[dict[str, str]], AppProcess],
) -> None:
    stable = app_process({"APP_VERSION": "1.0.0", "APP_SLOT": "stable"})
    canary = app_process({"APP_VERSION": "1.1.0", "APP_SLOT": "canary"})
    stable.wait_ready()
    canary.wait_ready()
    answers = [httpx.get(f"{app.base_url}/api/batches/B-1001") for app in (stable, canary)]
    data_dir = Path(stable.log_path).parent / "process-data"
    with sql(data_dir) as connection:
        batches = connection.execute(text("SELECT COUNT(*) FROM batches")).scalar_one()
    assert [answer.status_code for answer in answers] == [200, 200]
    assert revision_of(data_dir) == [SCHEMA_REVISION]
    assert batches == 3
    assert (data_dir / DB_FILE).is_file()
