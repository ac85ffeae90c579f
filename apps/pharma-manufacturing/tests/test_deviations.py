"""Deviations: anyone records one, QA closes it with a resolution, an open one blocks release."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pharma_kit import as_user, signature, step_body, write_headers

if TYPE_CHECKING:
    from ops_kit.testing import InProcess

DEVIATIONS = "/api/batches/B-1001/deviations"
RELEASE = {"signature": signature("quinn", "approved")}


async def test_an_open_deviation_blocks_release_until_qa_closes_it(in_process: InProcess) -> None:
    report = {"step_sequence": 1, "severity": "major", "description": "granulator stopped 4 min"}
    async with in_process() as client:
        await client.post(
            "/api/batches/B-1001/steps", json=step_body(), headers=write_headers("k-1")
        )
        opened = await client.post(DEVIATIONS, json=report, headers=as_user("olivia"))
        deviation = opened.json()
        blocked = await client.post(
            "/api/batches/B-1001/release", json=RELEASE, headers=as_user("quinn")
        )
        close = f"{DEVIATIONS}/{deviation['id']}/close"
        resolution = {"resolution": "restart validated; no impact on granule size"}
        by_operator = await client.post(close, json=resolution, headers=as_user("olivia"))
        closed = await client.post(close, json=resolution, headers=as_user("quinn"))
        twice = await client.post(close, json=resolution, headers=as_user("quinn"))
        listed = (await client.get(DEVIATIONS)).json()
        trail = (await client.get("/api/batches/B-1001/audit")).json()
        released = await client.post(
            "/api/batches/B-1001/release", json=RELEASE, headers=as_user("quinn")
        )
    assert opened.status_code == 201
    assert (deviation["status"], deviation["opened_by"], deviation["step_sequence"]) == (
        "open",
        "olivia",
        1,
    )
    assert blocked.status_code == 409
    assert blocked.json()["code"] == "OPEN_DEVIATIONS"
    assert by_operator.status_code == 403
    assert closed.status_code == 200
    assert (closed.json()["status"], closed.json()["closed_by"]) == ("closed", "quinn")
    assert twice.status_code == 409
    assert [d["status"] for d in listed] == ["closed"]
    status_change = next(
        e for e in trail if e["table_name"] == "deviations" and e["field"] == "status"
    )
    assert (status_change["old_value"], status_change["new_value"]) == ('"open"', '"closed"')
    assert status_change["reason"] == resolution["resolution"]
    assert released.status_code == 200


async def test_a_deviation_must_name_an_existing_batch_and_step(in_process: InProcess) -> None:
    report = {"severity": "minor", "description": "x"}
    async with in_process() as client:
        unknown_step = await client.post(
            DEVIATIONS, json={**report, "step_sequence": 7}, headers=as_user("olivia")
        )
        unknown_batch = await client.post(
            "/api/batches/B-9/deviations", json=report, headers=as_user("olivia")
        )
        bad_severity = await client.post(
            DEVIATIONS, json={**report, "severity": "meh"}, headers=as_user("olivia")
        )
        on_released = await client.post(
            "/api/batches/B-1003/deviations", json=report, headers=as_user("olivia")
        )
    assert (unknown_step.status_code, unknown_batch.status_code) == (404, 404)
    assert bad_severity.status_code == 422
    assert on_released.status_code == 201  # found after release: still recorded
