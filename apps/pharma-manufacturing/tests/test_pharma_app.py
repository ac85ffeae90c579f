"""pharma-manufacturing: the operations contract (ops_kit.testing: health, version, metrics,
drill faults, the SIGTERM drain), the batch read, drill faults for QA users only."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from ops_kit.testing import BREAK_IT, DRILL, OpsContract
from pharma_kit import as_user, drill_user, step_body, write_headers
from pharma_manufacturing.main import create_app
from pharma_manufacturing.settings import Settings

if TYPE_CHECKING:
    from pathlib import Path

    from ops_kit.testing import InProcess


class TestOperations(OpsContract):
    APP = "pharma-manufacturing"
    API_PATH = "/api/batches/B-1001"
    API_ROUTE = "/api/batches/{batch_id}"

    def drill_headers(self) -> dict[str, str]:
        return drill_user()


async def test_seeded_batch_is_found_and_unknown_batch_is_404(in_process: InProcess) -> None:
    async with in_process() as client:
        batch = await client.get("/api/batches/B-1002")
        unknown = await client.get("/api/batches/B-9999")
    assert batch.status_code == 200
    assert batch.json()["product"] == "Paracetamol 500 mg tablets"
    assert batch.json()["status"] == "in_progress"
    assert unknown.status_code == 404


async def test_error_rate_one_fails_recording_a_step_too(in_process: InProcess) -> None:
    async with in_process({"APP_FAULT_ERROR_RATE": "1"}) as client:
        step = await client.post(
            "/api/batches/B-1001/steps", json=step_body(), headers=write_headers("k-1")
        )
    assert step.status_code == 503


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 401, "NOT_AUTHENTICATED"),  # no credential
        (as_user("quinn", "not-her-password"), 401, "NOT_AUTHENTICATED"),  # a wrong one
        ({"Authorization": "Bearer quinn.9999999999.forged"}, 401, "NOT_AUTHENTICATED"),
        (as_user("olivia"), 403, "NOT_PERMITTED"),  # operator: signed in, not privileged
        (as_user("sam"), 403, "NOT_PERMITTED"),  # supervisor: neither
    ],
    ids=["no-credential", "wrong-password", "forged-token", "operator", "supervisor"],
)
async def test_a_drill_without_a_qa_user_is_refused_and_changes_nothing(
    in_process: InProcess, data_dir: Path, headers: dict[str, str], status: int, code: str
) -> None:
    """Reads are open in local (`open_reads`), drills never are."""
    app = create_app(Settings.from_env({**DRILL, "APP_DATA_DIR": str(data_dir)}))
    faults = app.state.faults
    async with in_process(app=app) as client:
        refused = await client.post("/drill/faults", json=BREAK_IT, headers=headers)
        batch = await client.get("/api/batches/B-1001")
        ready = await client.get("/healthz/ready")
    assert refused.status_code == status
    assert refused.json()["code"] == code
    assert ("WWW-Authenticate" in refused.headers) is (status == 401)
    if status == 403:
        assert "may not run drills: that needs the role qa" in refused.json()["detail"]
    assert app.state.faults is faults  # nothing was set
    assert (batch.status_code, ready.status_code) == (200, 200)


async def test_a_qa_user_runs_the_drill_with_a_password_or_a_session_token(
    in_process: InProcess,
) -> None:
    async with in_process(DRILL) as client:
        by_password = await client.post(
            "/drill/faults", json={"error_rate": 1.0}, headers=drill_user()
        )
        broken = await client.get("/api/batches/B-1001")
        session = await client.post(
            "/api/session", json={"user_id": "quinn", "password": "demo-quinn"}
        )
        assert session.status_code == 503  # the session API is an API: the drill broke it too
        await client.post("/drill/faults", json={}, headers=drill_user())
        session = await client.post(
            "/api/session", json={"user_id": "quinn", "password": "demo-quinn"}
        )
        bearer = {"Authorization": f"Bearer {session.json()['token']}"}
        by_token = await client.post("/drill/faults", json={"latency_ms": 1}, headers=bearer)
    assert by_password.status_code == 200
    assert broken.status_code == 503
    assert by_token.json() == {"error_rate": 0.0, "latency_ms": 1, "ready_fail": False}
