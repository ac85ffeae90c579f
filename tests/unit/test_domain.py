"""Domain checks without Temporal: the rules' edges, and asking a live version over HTTP."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from zdp.config import AppConfig, CalendarConfig, FreezeWindow, WorkInProgressCheck
from zdp.domain import HttpAppQuery, freeze_check, validation_check, work_in_progress_check
from zdp.errors import ZdpError
from zdp.models import Artifact, ReleaseManifest, ValidationReference

NOW = datetime(2026, 12, 31, 15, 0, tzinfo=UTC)
CHECK = WorkInProgressCheck(
    path="/api/line/status", field="batches_in_progress", id_field="batch_id", noun="batch"
)


def _app(**fields: Any) -> AppConfig:
    return AppConfig.model_validate(
        {
            "criticality": "high",
            "environments": {
                "staging": {"criticality": "medium"},
                "production": {"criticality": "critical", "requires_validation": True},
            },
            **fields,
        }
    )


def _frozen() -> AppConfig:
    window = FreezeWindow(
        start=NOW - timedelta(days=1), end=NOW + timedelta(days=1), reason="year-end close"
    )
    return _app(calendar=CalendarConfig(timezone="Europe/Zurich", freeze_windows=[window]))


def test_freeze_blocks_production_and_says_how_to_proceed() -> None:
    outcome = freeze_check(_frozen(), "production", NOW, None)
    assert outcome.check.blocking and not outcome.check.passed
    assert "production is frozen: 'year-end close' until 2027-01-01T15:00:00+00:00" in (
        outcome.check.detail
    )
    assert "emergency override" in outcome.check.detail


def test_emergency_override_passes_with_an_approvals_floor_of_two() -> None:
    outcome = freeze_check(_frozen(), "production", NOW, "INC-1: settlement batch fails")
    assert outcome.check.passed and outcome.approvals_floor == 2
    assert "INC-1: settlement batch fails" in outcome.check.detail


def test_freeze_ends_exactly_at_its_end() -> None:
    end = NOW + timedelta(days=1)
    assert freeze_check(_frozen(), "production", end, None).check.passed
    assert not freeze_check(_frozen(), "production", end - timedelta(seconds=1), None).check.passed


def test_emergency_approvals_below_two_are_refused_by_the_config() -> None:
    with pytest.raises(ValueError, match="emergency_min_approvals"):
        CalendarConfig(timezone="UTC", emergency_min_approvals=1)


class _Answers:
    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def get_json(self, endpoint: str, path: str, timeout: float) -> Any:
        self.asked.append(endpoint)
        answer = self.answers[endpoint]
        if isinstance(answer, Exception):
            raise answer
        return answer


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_first_endpoint_down_the_next_one_is_asked() -> None:
    query = _Answers({"a": ZdpError("a: connection refused"), "b": {"batches_in_progress": []}})
    outcome = _run(work_in_progress_check(CHECK, "production", ["a", "b"], query))
    assert query.asked == ["a", "b"]
    assert outcome.check.passed and outcome.factor.points == 0


def test_malformed_answer_counts_as_no_answer_and_fails_closed_in_production() -> None:
    query = _Answers({"a": {"batches": ["B-1"]}})
    outcome = _run(work_in_progress_check(CHECK, "production", ["a"], query))
    assert outcome.check.blocking
    assert "has no list 'batches_in_progress'" in outcome.check.detail


def test_many_batches_are_listed_briefly() -> None:
    items = [{"batch_id": f"B-{i}"} for i in range(12)]
    outcome = _run(
        work_in_progress_check(
            CHECK, "staging", ["a"], _Answers({"a": {"batches_in_progress": items}})
        )
    )
    assert outcome.check.passed and outcome.factor.points == 15
    assert outcome.check.detail == (
        "12 batches in progress: B-0, B-1, B-2, B-3, B-4, B-5, B-6, B-7, B-8, B-9 and 2 more"
    )


def _manifest(validation: ValidationReference | None) -> ReleaseManifest:
    return ReleaseManifest(
        app="pharma-manufacturing",
        version="2.0.0",
        artifact=Artifact(kind="wheel", reference="w.whl", digest="sha256:" + "a" * 64),
        validation=validation,
    )


def test_validation_is_required_only_where_configured() -> None:
    assert validation_check(_manifest(None), _app(), "staging").passed
    refused = validation_check(_manifest(None), _app(), "production")
    assert refused.blocking and "names no validation document" in refused.detail


def test_validation_lacking_pq_is_refused() -> None:
    ref = ValidationReference(document_id="VAL-7", qualifications=["IQ", "OQ"])
    refused = validation_check(_manifest(ref), _app(), "production")
    assert refused.blocking and refused.detail.endswith("validation document VAL-7 lacks PQ")


def test_validation_document_id_is_checked() -> None:
    with pytest.raises(ValueError, match="document_id"):
        ValidationReference(document_id="../../etc/passwd x")


@pytest.fixture
def line_server() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/api/line/status":
                body = json.dumps({"batches_in_progress": [{"batch_id": "B-1001"}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
            else:
                body = b"not found"
                self.send_response(404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_query_reads_json_and_reports_http_errors(line_server: str) -> None:
    query = HttpAppQuery()
    answer = _run(query.get_json(line_server, "/api/line/status", 2.0))
    assert answer == {"batches_in_progress": [{"batch_id": "B-1001"}]}
    with pytest.raises(ZdpError, match="answered HTTP 404"):
        _run(query.get_json(line_server, "/nope", 2.0))
    with pytest.raises(ZdpError, match="ConnectError"):
        _run(query.get_json("http://127.0.0.1:9", "/api/line/status", 2.0))
