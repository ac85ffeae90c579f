"""The audit trail: who changed what (table, record, field), old and new value, why and when;
append-only through the API and in the database itself."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from pharma_kit import as_user, sqlite_engine, step_body, write_headers
from pharma_manufacturing.storage.tables import audit_trail, signatures
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError

if TYPE_CHECKING:
    from ops_kit.testing import InProcess

STEP_ONE = "/api/batches/B-1001/steps/1"


async def test_a_correction_records_old_and_new_values_and_the_reason(
    in_process: InProcess,
) -> None:
    async with in_process() as client:
        await client.post(
            "/api/batches/B-1001/steps", json=step_body(), headers=write_headers("k-1")
        )
        first = {"parameters": {"temperature_c": 42.0}, "reason": "probe recalibrated"}
        second = {"parameters": {"temperature_c": 42.5}, "equipment_id": "GR-02", "reason": "typo"}
        await client.patch(STEP_ONE, json=first, headers=as_user("olivia"))
        await client.patch(STEP_ONE, json=second, headers=as_user("sam"))
        trail = (await client.get("/api/batches/B-1001/audit")).json()
    changes = [
        (e["user_id"], e["field"], e["old_value"], e["new_value"], e["reason"])
        for e in trail
        if e["table_name"] == "steps" and e["action"] == "update"
    ]
    assert changes == [
        (
            "olivia",
            "parameters",
            '{"temperature_c": 41.5}',
            '{"temperature_c": 42.0}',
            "probe recalibrated",
        ),
        ("olivia", "revision", "1", "2", "probe recalibrated"),
        ("sam", "parameters", '{"temperature_c": 42.0}', '{"temperature_c": 42.5}', "typo"),
        ("sam", "equipment_id", None, '"GR-02"', "typo"),
        ("sam", "revision", "2", "3", "typo"),
    ]
    created = next(e for e in trail if e["table_name"] == "steps" and e["action"] == "create")
    assert created["record_id"] == "B-1001/1"
    assert json.loads(created["new_value"])["parameters"] == {"temperature_c": 41.5}
    assert all(e["at"].endswith("Z") for e in trail)


async def test_a_change_to_an_executed_step_needs_a_reason(in_process: InProcess) -> None:
    async with in_process() as client:
        await client.post(
            "/api/batches/B-1001/steps", json=step_body(), headers=write_headers("k-1")
        )
        no_reason = await client.patch(
            STEP_ONE, json={"parameters": {"temperature_c": 1.0}}, headers=as_user("olivia")
        )
        blank = await client.patch(
            STEP_ONE,
            json={"parameters": {"temperature_c": 1.0}, "reason": "  "},
            headers=as_user("olivia"),
        )
        step = (await client.get("/api/batches/B-1001")).json()["steps"][0]
    assert (no_reason.status_code, blank.status_code) == (422, 422)
    assert no_reason.json()["code"] == "REASON_REQUIRED"
    assert (step["parameters"], step["revision"]) == ({"temperature_c": 41.5}, 1)


async def test_every_write_leaves_an_entry_naming_who_and_what(in_process: InProcess) -> None:
    async with in_process() as client:
        await client.post(
            "/api/batches/B-1001/steps", json=step_body(), headers=write_headers("k-1")
        )
        await client.post(
            "/api/batches/B-1001/consumptions",
            json={"lot_id": "ML-GEL-2402", "quantity": 1000},
            headers=as_user("olivia"),
        )
        await client.post(
            "/api/batches/B-1001/deviations",
            json={"severity": "minor", "description": "label roll changed late"},
            headers=as_user("sam"),
        )
        trail = (await client.get("/api/batches/B-1001/audit")).json()
    mine = [(e["user_id"], e["action"], e["table_name"]) for e in trail if e["user_id"] != "system"]
    assert mine == [
        ("olivia", "create", "steps"),
        ("olivia", "create", "signatures"),
        ("olivia", "create", "lot_consumptions"),
        ("sam", "create", "deviations"),
    ]


async def test_the_api_has_no_way_to_change_or_remove_an_entry(in_process: InProcess) -> None:
    async with in_process() as client:
        answers = [
            (await client.request(method, "/api/batches/B-1001/audit", headers=as_user("quinn")))
            for method in ("PUT", "PATCH", "DELETE", "POST")
        ]
    assert [answer.status_code for answer in answers] == [405, 405, 405, 405]


@pytest.mark.parametrize("table", [audit_trail, signatures], ids=lambda t: t.name)
async def test_the_database_refuses_update_and_delete(
    in_process: InProcess, data_dir: Path, table: object
) -> None:
    async with in_process() as client:  # migrated and seeded: both tables hold rows
        await client.get("/healthz/ready")
    with sqlite_engine(data_dir) as engine:
        with engine.connect() as connection:
            before = connection.execute(select(func.count()).select_from(table)).scalar_one()
        attempts = [update(table).values(user_id="mallory"), delete(table)]  # type: ignore[arg-type]
        for statement in attempts:
            with pytest.raises(IntegrityError, match="append-only"), engine.begin() as connection:
                connection.execute(statement)
        with engine.connect() as connection:
            after = connection.execute(select(func.count()).select_from(table)).scalar_one()
            users = set(connection.execute(select(table.c.user_id)).scalars())  # type: ignore[attr-defined]
    assert before > 0
    assert after == before
    assert "mallory" not in users
