"""21 CFR Part 11 e-signatures: re-authentication, what the record shows, and the binding of a
signature to the record it signs (a copied signature, or an altered record, fails)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from pharma_kit import as_user, signature, sql, step_body, write_headers
from pharma_manufacturing.services.credentials import User
from pharma_manufacturing.services.signatures import RecordRef, SignatureSeal
from sqlalchemy import text

if TYPE_CHECKING:
    import httpx
    from ops_kit.testing import InProcess

STEPS = "/api/batches/B-1001/steps"
RELEASE = {"signature": signature("quinn", "approved")}


async def _two_signed_steps(client: httpx.AsyncClient) -> None:
    first = await client.post(STEPS, json=step_body("granulation"), headers=write_headers("k-1"))
    second = await client.post(
        STEPS, json=step_body("drying", user="sam"), headers=write_headers("k-2", user="sam")
    )
    assert (first.status_code, second.status_code) == (201, 201)


async def test_step_record_shows_printed_name_utc_time_and_meaning(in_process: InProcess) -> None:
    before = datetime.now(UTC)
    async with in_process() as client:
        recorded = await client.post(STEPS, json=step_body(), headers=write_headers("k-1"))
    [shown] = recorded.json()["signatures"]
    signed_at = datetime.fromisoformat(shown["signed_at"])
    assert shown["printed_name"] == "Olivia Novak"
    assert shown["meaning"] == "performed"
    assert shown["signed_at"].endswith("Z") and signed_at.utcoffset().total_seconds() == 0
    assert before <= signed_at <= datetime.now(UTC)
    assert shown["manifestation"] == (
        f"Olivia Novak (olivia), {signed_at:%Y-%m-%d %H:%M:%S} UTC, performed"
    )
    assert (shown["status"], shown["verified"]) == ("bound", True)
    assert "password" not in recorded.text and "hmac" not in recorded.text


async def test_wrong_signing_password_is_refused_and_nothing_is_recorded(
    in_process: InProcess,
) -> None:
    body = step_body()
    body["signature"] = signature("olivia", password="demo-sam")
    async with in_process() as client:
        refused = await client.post(STEPS, json=body, headers=write_headers("k-1"))
        other_signer = step_body()
        other_signer["signature"] = signature("sam", password="demo-olivia")
        impersonated = await client.post(STEPS, json=other_signer, headers=write_headers("k-2"))
        batch = (await client.get("/api/batches/B-1001")).json()
    assert refused.status_code == 401
    assert refused.json()["code"] == "SIGNER_NOT_AUTHENTICATED"
    assert "wrong user id or password for 'olivia'" in refused.json()["detail"]
    assert impersonated.status_code == 401
    assert batch["steps"] == []


async def test_signature_copied_onto_another_step_is_refused(
    in_process: InProcess, data_dir: Path
) -> None:
    async with in_process() as client:
        await _two_signed_steps(client)
        with sql(data_dir) as connection:  # claim olivia also performed step 2
            connection.execute(
                text(
                    "INSERT INTO signatures (batch_id, record_type, record_key, record_revision, "
                    "user_id, printed_name, meaning, signed_at, content_sha256, hmac_sha256) "
                    "SELECT batch_id, record_type, '2', record_revision, user_id, printed_name, "
                    "meaning, signed_at, content_sha256, hmac_sha256 FROM signatures "
                    "WHERE record_type = 'step' AND record_key = '1'"
                )
            )
        original = await client.get(f"{STEPS}/1/signatures/verify")
        copied = await client.get(f"{STEPS}/2/signatures/verify")
        record = (await client.get("/api/batches/B-1001/record")).json()
        release = await client.post(
            "/api/batches/B-1001/release", json=RELEASE, headers=as_user("quinn")
        )
    assert original.status_code == 200
    assert original.json()["verified"] is True
    assert copied.status_code == 409
    assert copied.json()["code"] == "SIGNATURE_NOT_BOUND"
    assert "copied from another record" in copied.json()["detail"]
    statuses = [(s["user_id"], s["status"]) for s in copied.json()["verification"]["signatures"]]
    assert statuses == [("sam", "bound"), ("olivia", "not_bound")]
    step_two = record["steps"][1]["signatures"]
    assert [s["verified"] for s in step_two] == [True, False]
    assert release.status_code == 409
    assert release.json()["code"] == "SIGNATURE_NOT_BOUND"


async def test_step_altered_after_signing_fails_verification(
    in_process: InProcess, data_dir: Path
) -> None:
    async with in_process() as client:
        await _two_signed_steps(client)
        with sql(data_dir) as connection:  # bypass the API: no correction, no audit entry
            connection.execute(
                text(
                    "UPDATE steps SET parameters = '{\"temperature_c\": 38.0}' "
                    "WHERE batch_id = 'B-1001' AND sequence = 1"
                )
            )
        altered = await client.get(f"{STEPS}/1/signatures/verify")
        untouched = await client.get(f"{STEPS}/2/signatures/verify")
        release = await client.post(
            "/api/batches/B-1001/release", json=RELEASE, headers=as_user("quinn")
        )
    assert altered.status_code == 409
    assert altered.json()["code"] == "SIGNATURE_NOT_BOUND"
    assert "altered after it was signed" in altered.json()["detail"]
    assert untouched.status_code == 200
    assert release.json()["code"] == "SIGNATURE_NOT_BOUND"


async def test_released_batch_altered_afterwards_loses_its_approval(
    in_process: InProcess, data_dir: Path
) -> None:
    async with in_process() as client:
        await client.post(STEPS, json=step_body(), headers=write_headers("k-1"))
        released = await client.post(
            "/api/batches/B-1001/release", json=RELEASE, headers=as_user("quinn")
        )
        with sql(data_dir) as connection:
            connection.execute(
                text("UPDATE batches SET product = 'Amoxicillin 1 g' WHERE batch_id = 'B-1001'")
            )
        record = (await client.get("/api/batches/B-1001/record")).json()
    assert released.json()["approvals"][0]["status"] == "bound"
    assert record["approvals"][0]["status"] == "not_bound"
    assert record["approvals"][0]["verified"] is False


async def test_verification_needs_a_second_person_with_the_role(in_process: InProcess) -> None:
    async with in_process() as client:
        await _two_signed_steps(client)  # olivia performed step 1, sam step 2
        by_operator = await client.post(
            f"{STEPS}/1/signatures", json=signature("olivia", "verified"), headers=as_user("olivia")
        )
        by_performer = await client.post(
            f"{STEPS}/2/signatures", json=signature("sam", "verified"), headers=as_user("sam")
        )
        approved = await client.post(
            f"{STEPS}/1/signatures", json=signature("quinn", "approved"), headers=as_user("quinn")
        )
        by_second_person = await client.post(
            f"{STEPS}/1/signatures", json=signature("sam", "verified"), headers=as_user("olivia")
        )
        report = (await client.get(f"{STEPS}/1/signatures/verify")).json()
    assert by_operator.status_code == 403  # an operator signs "performed" only
    assert "may not sign as 'verified'" in by_operator.json()["detail"]
    assert by_performer.status_code == 403
    assert "a second person verifies" in by_performer.json()["detail"]
    assert approved.status_code == 409  # "approved" belongs to the batch release
    assert by_second_person.status_code == 201
    assert by_second_person.json()["printed_name"] == "Samuel Reyes"
    assert [(s["meaning"], s["status"]) for s in report["signatures"]] == [
        ("performed", "bound"),
        ("verified", "bound"),
    ]


async def test_correction_supersedes_signatures_until_the_step_is_signed_again(
    in_process: InProcess,
) -> None:
    correction = {"parameters": {"temperature_c": 42.0}, "reason": "probe recalibrated"}
    async with in_process() as client:
        await client.post(STEPS, json=step_body(), headers=write_headers("k-1"))
        corrected = await client.patch(f"{STEPS}/1", json=correction, headers=as_user("olivia"))
        unsigned = (await client.get(f"{STEPS}/1/signatures/verify")).json()
        refused = await client.post(
            "/api/batches/B-1001/release", json=RELEASE, headers=as_user("quinn")
        )
        resigned = await client.post(
            f"{STEPS}/1/signatures", json=signature("olivia"), headers=as_user("olivia")
        )
        released = await client.post(
            "/api/batches/B-1001/release", json=RELEASE, headers=as_user("quinn")
        )
    assert corrected.status_code == 200
    assert corrected.json()["revision"] == 2
    assert corrected.json()["parameters"] == {"temperature_c": 42.0}
    assert (unsigned["verified"], unsigned["signed"]) == (True, False)
    assert [s["status"] for s in unsigned["signatures"]] == ["superseded"]
    assert refused.json()["code"] == "STEP_NOT_SIGNED"
    assert (resigned.status_code, resigned.json()["record_revision"]) == (201, 2)
    assert released.status_code == 200


def test_a_seal_made_with_another_key_does_not_verify() -> None:
    signer = User("olivia", "Olivia Novak", frozenset({"operator"}), "unused")
    content = {"type": "batch", "batch_id": "B-1", "revision": 1}
    ref = RecordRef("batch", "B-1", "B-1", 1)
    row = SignatureSeal(b"k" * 32).sign(ref, content, signer, "approved", datetime.now(UTC))
    assert SignatureSeal(b"k" * 32).check(row, content).status == "bound"
    assert SignatureSeal(b"x" * 32).check(row, content).status == "not_bound"
