"""Batch records: signed idempotent steps, sign-in, starting and releasing a batch, the line
status the engine reads, and the batch read staying two queries."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pharma_kit import as_user, in_readiness_check, signature, sql, step_body, write_headers
from pharma_manufacturing.main import create_app
from pharma_manufacturing.settings import Settings
from sqlalchemy import event, text

if TYPE_CHECKING:
    from ops_kit.testing import InProcess

STEPS = "/api/batches/B-1001/steps"


async def test_retried_step_is_recorded_once(in_process: InProcess) -> None:
    async with in_process() as client:
        first = await client.post(STEPS, json=step_body(), headers=write_headers("k-1"))
        retry = await client.post(STEPS, json=step_body(), headers=write_headers("k-1"))
        second = await client.post(STEPS, json=step_body(), headers=write_headers("k-2"))
        batch = (await client.get("/api/batches/B-1001")).json()
    assert first.status_code == 201
    assert "Idempotent-Replay" not in first.headers
    assert retry.status_code == 200
    assert retry.headers["Idempotent-Replay"] == "true"
    assert retry.json() == first.json()
    assert second.status_code == 201
    assert [step["sequence"] for step in batch["steps"]] == [1, 2]
    assert [step["idempotency_key"] for step in batch["steps"]] == ["k-1", "k-2"]


async def test_reused_key_for_another_step_or_batch_is_409(in_process: InProcess) -> None:
    async with in_process() as client:
        await client.post(STEPS, json=step_body(), headers=write_headers("k-1"))
        changed = await client.post(STEPS, json=step_body("drying"), headers=write_headers("k-1"))
        moved = await client.post(
            "/api/batches/B-1002/steps", json=step_body(), headers=write_headers("k-1")
        )
    assert (changed.status_code, moved.status_code) == (409, 409)
    assert changed.json()["code"] == "IDEMPOTENCY_CONFLICT"


async def test_step_needs_an_idempotency_key(in_process: InProcess) -> None:
    async with in_process() as client:
        response = await client.post(STEPS, json=step_body(), headers=as_user("olivia"))
    assert response.status_code == 422


async def test_writes_need_a_signed_in_user(in_process: InProcess) -> None:
    async with in_process() as client:
        anonymous = await client.post(STEPS, json=step_body(), headers={"Idempotency-Key": "k"})
        wrong = await client.post(
            STEPS, json=step_body(), headers={**as_user("olivia", "guess"), "Idempotency-Key": "k"}
        )
        read = await client.get("/api/batches/B-1001")  # reads are open in APP_ENV=local
    assert anonymous.status_code == 401
    assert anonymous.json()["code"] == "NOT_AUTHENTICATED"
    assert wrong.status_code == 401
    assert read.status_code == 200


async def test_session_token_signs_in_but_signing_still_asks_for_the_password(
    in_process: InProcess,
) -> None:
    async with in_process() as client:
        session = await client.post(
            "/api/session", json={"user_id": "olivia", "password": "demo-olivia"}
        )
        bearer = {"Authorization": f"Bearer {session.json()['token']}", "Idempotency-Key": "k"}
        recorded = await client.post(STEPS, json=step_body(), headers=bearer)
        forged = await client.post(
            STEPS,
            json=step_body(),
            headers={"Authorization": "Bearer olivia.99999999999.00", "Idempotency-Key": "k2"},
        )
        garbled = await client.post(
            STEPS,
            json=step_body(),
            headers={
                "Authorization": "Bearer olivia.1.\u00e9".encode("latin-1"),
                "Idempotency-Key": "k4",
            },
        )
        no_password = step_body()
        del no_password["signature"]["password"]
        unsigned = await client.post(
            STEPS, json=no_password, headers={**bearer, "Idempotency-Key": "k3"}
        )
    assert session.status_code == 201
    assert session.json()["printed_name"] == "Olivia Novak"
    assert recorded.status_code == 201
    assert forged.status_code == 401
    assert garbled.status_code == 401
    assert unsigned.status_code == 422


async def test_released_batch_takes_no_steps(in_process: InProcess) -> None:
    async with in_process() as client:
        released = await client.post(
            "/api/batches/B-1003/steps", json=step_body(), headers=write_headers("k-1")
        )
        unknown = await client.post(
            "/api/batches/B-9999/steps", json=step_body(), headers=write_headers("k-2")
        )
    assert (released.status_code, unknown.status_code) == (409, 404)
    assert released.json()["code"] == "BATCH_RELEASED"


async def test_starting_a_batch_needs_a_supervisor_or_qa(in_process: InProcess) -> None:
    new = {"batch_id": "B-2001", "product": "Amoxicillin 250 mg capsules"}
    async with in_process() as client:
        operator = await client.post("/api/batches", json=new, headers=as_user("olivia"))
        supervisor = await client.post("/api/batches", json=new, headers=as_user("sam"))
        again = await client.post("/api/batches", json=new, headers=as_user("sam"))
        line = (await client.get("/api/line/status")).json()
    assert operator.status_code == 403
    assert supervisor.status_code == 201
    assert supervisor.json()["created_by"] == "sam"
    assert again.status_code == 409
    assert "B-2001" in [batch["batch_id"] for batch in line["batches_in_progress"]]


async def test_line_status_lists_every_batch_in_progress_from_the_database(
    in_process: InProcess, data_dir: Path
) -> None:
    async with in_process() as client:
        seeded = await client.get("/api/line/status")
        with sql(data_dir) as connection:  # another version of the app released B-1002
            connection.execute(
                text("UPDATE batches SET status = 'released' WHERE batch_id = 'B-1002'")
            )
        after = (await client.get("/api/line/status")).json()
    assert seeded.status_code == 200
    body = seeded.json()
    assert set(body) == {"batches_in_progress", "checked_at"}
    assert [b["batch_id"] for b in body["batches_in_progress"]] == ["B-1002", "B-1001"]
    assert body["batches_in_progress"][1] == {
        "batch_id": "B-1001",
        "product": "Amoxicillin 500 mg capsules",
        "started_at": body["batches_in_progress"][1]["started_at"],
    }
    assert body["checked_at"].endswith("Z")
    assert [b["batch_id"] for b in after["batches_in_progress"]] == ["B-1001"]


async def test_line_status_is_open_even_where_reads_need_credentials(
    in_process: InProcess,
) -> None:
    async with in_process({"APP_OPEN_READS": "false"}) as client:
        line = await client.get("/api/line/status")
        batch = await client.get("/api/batches/B-1001")
        signed_in = await client.get("/api/batches/B-1001", headers=as_user("olivia"))
    assert line.status_code == 200
    assert batch.status_code == 401
    assert signed_in.status_code == 200


async def test_batch_read_is_two_queries_whatever_the_number_of_steps(
    in_process: InProcess, data_dir: Path
) -> None:
    app = create_app(Settings.from_env({"APP_DATA_DIR": str(data_dir)}))
    statements: list[str] = []

    def count(*args: Any) -> None:
        if not in_readiness_check():  # the background refresher's query is not the read's
            statements.append(args[2])

    async with in_process(app=app) as client:
        for n in range(5):
            await client.post(STEPS, json=step_body(f"step-{n}"), headers=write_headers(f"k-{n}"))
        event.listen(app.state.database.engine, "before_cursor_execute", count)
        batch = await client.get("/api/batches/B-1001")
        event.remove(app.state.database.engine, "before_cursor_execute", count)
    assert len(batch.json()["steps"]) == 5
    assert "signatures" not in batch.json()["steps"][0]  # small payload: the record has them
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) == 2, statements


async def test_release_needs_qa_signed_steps_and_books_the_product_lot(
    in_process: InProcess,
) -> None:
    async with in_process() as client:
        await client.post(STEPS, json=step_body(), headers=write_headers("k-1"))
        release = {
            "signature": signature("quinn", "approved"),
            "product_lot": {"lot_id": "PL-1001-A", "quantity": 98000, "unit": "capsules"},
        }
        by_operator = await client.post(
            "/api/batches/B-1001/release",
            json={**release, "signature": signature("olivia", "approved")},
            headers=as_user("olivia"),
        )
        released = await client.post(
            "/api/batches/B-1001/release", json=release, headers=as_user("quinn")
        )
        twice = await client.post(
            "/api/batches/B-1001/release", json=release, headers=as_user("quinn")
        )
        line = (await client.get("/api/line/status")).json()
    assert by_operator.status_code == 403
    assert released.status_code == 200, released.text
    record = released.json()
    assert record["status"] == "released"
    [approval] = record["approvals"]
    assert (approval["printed_name"], approval["meaning"], approval["status"]) == (
        "Quinn Adebayo",
        "approved",
        "bound",
    )
    assert [lot["lot_id"] for lot in record["product_lots"]] == ["PL-1001-A"]
    assert twice.status_code == 409
    assert [b["batch_id"] for b in line["batches_in_progress"]] == ["B-1002"]
