"""PostgresAuditLog against a real PostgreSQL 15 (tests/pg_server.py), one database per test:
the file backend's format, retries, concurrent processes, checkpoints, export, append-only
triggers, tampering, the CLI and the worker's activity."""

from __future__ import annotations

import hashlib
import itertools
import json
import multiprocessing
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from temporalio.testing import ActivityEnvironment
from typer.testing import CliRunner, Result

from activities.compliance import ComplianceActivities
from tests.kit import Harness
from tests.pg_server import PostgresServer, serve_or_skip
from zdp.cli import audit_cmd
from zdp.compliance.audit.log import (
    GENESIS_HASH,
    AuditEvent,
    AuditLog,
    AuditLogError,
    AuditVerificationError,
    checkpoints_path_for,
    default_log_path,
    verify_log,
)
from zdp.compliance.audit.postgres import PostgresAuditLog
from zdp.compliance.audit.postgres_verify import export_database, verify_database
from zdp.compliance.engine_key import engine_key
from zdp.compliance.evidence import verify_bundle
from zdp.models import AuditRecordInput, Outcome, Phase, TimelineEvent

KEY = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"engine").digest())  # same in children
WF = "deploy-x-prod"
T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
TABLES = ("zdp_audit_entries", "zdp_audit_checkpoints")

cli = typer.Typer()
cli.add_typer(audit_cmd.app, name="audit")


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    yield from serve_or_skip()


@pytest.fixture
def url(postgres: PostgresServer) -> str:
    """A fresh, empty database for this test."""
    return postgres.create_database("audit")


@pytest.fixture
def log_of_ten(url: str) -> Iterator[PostgresAuditLog]:
    """Ten entries and one checkpoint covering all of them."""
    log = PostgresAuditLog(url, KEY, checkpoint_every=10)
    log.append(WF, events(10))
    yield log
    log.close()


def event(index: int, run: str = "9f3a") -> AuditEvent:
    return AuditEvent(
        event_id=f"{run}/{index}",
        at=T0 + timedelta(seconds=index),
        kind="phase",
        message=f"step {index} — naïve",
        actor="alice" if index % 2 else None,
        data={"index": index, "weights": {"stable": 90, "canary": 10}},
    )


def events(count: int, run: str = "9f3a", start: int = 0) -> list[AuditEvent]:
    return [event(i, run) for i in range(start, start + count)]


def rows(url: str, query: str = "SELECT line FROM zdp_audit_entries ORDER BY seq") -> list[str]:
    with psycopg.connect(url) as connection:
        return [row[0] for row in connection.execute(query)]


def as_superuser(url: str, table: str, statement: str) -> None:
    """What a superuser can do: switch the table's triggers off, change it, switch them on."""
    with psycopg.connect(url) as connection:
        connection.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
        connection.execute(statement)
        connection.execute(f"ALTER TABLE {table} ENABLE TRIGGER USER")


def verify(url: str) -> AuditVerificationError:
    with pytest.raises(AuditVerificationError) as caught:
        verify_database(url, public_keys=[KEY.public_key()])
    return caught.value


# --------------------------------------------------------------------------- the chain


def test_rows_hold_exactly_the_lines_of_the_file_backend(url: str, tmp_path: Path) -> None:
    file_log = AuditLog(tmp_path / "audit.jsonl", KEY, checkpoint_every=0)
    database_log = PostgresAuditLog(url, KEY, checkpoint_every=0)
    for log in (file_log, database_log):
        log.append(WF, events(4))
        log.checkpoint(at=T0)
        log.append(WF, events(6))
        log.checkpoint(at=T0 + timedelta(hours=1))

    exported = export_database(url, tmp_path / "export" / "audit.jsonl")

    assert exported.path.read_bytes() == (tmp_path / "audit.jsonl").read_bytes()
    # Signed at the same instants with the same key: the same bytes.
    file_checkpoints = checkpoints_path_for(tmp_path / "audit.jsonl").read_bytes()
    assert exported.checkpoints_path.read_bytes() == file_checkpoints
    lines = [json.loads(line) for line in rows(url)]
    assert [e["seq"] for e in lines] == [0, 1, 2, 3, 4, 5]
    assert lines[0]["prev_hash"] == GENESIS_HASH
    for before, after in itertools.pairwise(lines):
        assert after["prev_hash"] == before["hash"]
    database_log.close()


def test_re_appending_logged_events_adds_nothing(url: str) -> None:
    log = PostgresAuditLog(url, KEY)
    log.append(WF, events(3))

    retried = log.append(WF, events(5))  # the activity retried with two more events
    assert (retried.appended, retried.skipped, retried.size) == (2, 3, 5)

    sqlalchemy_spelling = url.replace("postgresql://", "postgresql+psycopg://")
    other_process = PostgresAuditLog(sqlalchemy_spelling, KEY)  # the same URL as the pharma app's
    fresh = other_process.append(WF, events(5))
    assert (fresh.appended, fresh.skipped, fresh.size) == (0, 5, 5)
    assert fresh.head_hash == retried.head_hash

    other_workflow = log.append("deploy-y-prod", [*events(2), event(0)])  # same ids, other wf
    assert (other_workflow.appended, other_workflow.skipped) == (2, 1)
    assert verify_database(url, public_keys=[]).entries == 7
    with pytest.raises(AuditLogError, match="without a workflow id"):
        log.append("", events(1))
    log.close()
    other_process.close()


def append_from_a_process(url: str, run: str, start: float) -> int:
    """Run in a child process: its own batches, plus a set of events every process logs."""
    log = PostgresAuditLog(url, KEY, checkpoint_every=8)
    while datetime.now(UTC).timestamp() < start:  # line the processes up on one instant
        pass
    for batch in range(40):
        log.append(WF, events(2, run=run, start=2 * batch))
        log.append(WF, events(2, run="common", start=2 * batch))
    size = log.append(WF, []).size
    log.close()
    return size


def test_processes_appending_at_once_keep_one_contiguous_chain(url: str) -> None:
    start = datetime.now(UTC).timestamp() + 2.0
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        sizes = pool.starmap(append_from_a_process, [(url, "p1", start), (url, "p2", start)])

    report = verify_database(url, public_keys=[KEY.public_key()])
    assert report.entries == 2 * 80 + 80
    assert max(sizes) == report.entries
    assert report.checkpoints >= 1
    seqs = [int(s) for s in rows(url, "SELECT seq FROM zdp_audit_entries ORDER BY seq")]
    assert seqs == list(range(report.entries))
    keys = [(e["workflow_id"], e["event_id"]) for e in map(json.loads, rows(url))]
    assert len(keys) == len(set(keys))


def test_checkpoints_are_signed_every_n_entries_and_on_demand(url: str) -> None:
    log = PostgresAuditLog(url, KEY, checkpoint_every=4)
    for i in range(10):
        log.append(WF, [event(i)])
    assert [int(s) for s in rows(url, "SELECT size FROM zdp_audit_checkpoints")] == [4, 8]

    last = log.checkpoint(at=T0)
    assert (last.size, last.at) == (10, T0)
    assert log.checkpoint() == last  # nothing new: no second checkpoint
    assert PostgresAuditLog(url, KEY).checkpoint() == last  # another process sees it too
    report = verify_database(url, public_keys=[KEY.public_key()])
    assert (report.checkpoints, report.last_checkpoint) == (3, last)
    with pytest.raises(AuditLogError, match="no signing key"):
        PostgresAuditLog(url).checkpoint()
    log.close()


def test_entries_of_a_run_are_its_lines_as_stored(log_of_ten: PostgresAuditLog, url: str) -> None:
    log_of_ten.append(WF, events(3, run="other"))
    log_of_ten.append("deploy-y-prod", events(2))

    mine = log_of_ten.entries_of(WF, "9f3a/").splitlines(keepends=True)

    assert [line.decode().rstrip("\n") for line in mine] == rows(url)[:10]
    assert log_of_ten.entries_of(WF, "nothing/") == b""


# --------------------------------------------------------------------------- export and verify


def test_an_export_passes_the_offline_verifier(
    log_of_ten: PostgresAuditLog, tmp_path: Path
) -> None:
    log_of_ten.append(WF, events(2, start=10))  # two entries newer than the checkpoint
    target = tmp_path / "export" / "audit.jsonl"
    exported = export_database(log_of_ten.url, target)
    # Unsigned entries after the last checkpoint: both verifiers say so, alike.
    with pytest.raises(AuditVerificationError, match="no checkpoint covers entries 10-11") as off:
        verify_log(target, public_keys=[KEY.public_key()])
    with pytest.raises(AuditVerificationError, match="no checkpoint covers entries 10-11") as on:
        verify_database(log_of_ten.url, public_keys=[KEY.public_key()])
    assert str(off.value) == str(on.value)
    assert (exported.entries, exported.checkpoints) == (12, 1)

    log_of_ten.checkpoint()
    target = tmp_path / "signed" / "audit.jsonl"
    exported = export_database(log_of_ten.url, target)
    offline = verify_log(target, public_keys=[KEY.public_key()])
    online = verify_database(log_of_ten.url, public_keys=[KEY.public_key()])
    assert (exported.entries, exported.checkpoints) == (12, 2)
    assert exported.checkpoints_path == checkpoints_path_for(target)
    assert offline == online
    assert (online.entries, online.last_checkpoint and online.last_checkpoint.size) == (12, 12)
    with pytest.raises(AuditLogError, match="already exists"):
        export_database(log_of_ten.url, target)


def test_a_database_without_the_tables_holds_no_log(url: str) -> None:
    with pytest.raises(AuditLogError, match="holds no audit log"):
        verify_database(url, public_keys=[])


def test_an_unreachable_database_is_a_one_line_error(postgres: PostgresServer) -> None:
    down = f"postgresql://postgres:secret@127.0.0.1:{postgres.port + 1}/nowhere"
    with pytest.raises(AuditLogError) as caught:
        PostgresAuditLog(down, KEY).append(WF, events(1))
    message = str(caught.value)
    assert message.startswith(f"audit database postgres@127.0.0.1:{postgres.port + 1}/nowhere ")
    assert "unavailable" in message
    assert "secret" not in message and "\n" not in message


def test_a_dropped_connection_is_replaced_and_the_append_goes_through(url: str) -> None:
    log = PostgresAuditLog(url, KEY)
    log.append(WF, events(2))
    with psycopg.connect(url, autocommit=True) as admin:  # the server ends the idle session
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    assert log.append(WF, events(3)).appended == 1
    assert verify_database(url, public_keys=[]).entries == 3
    log.close()


# --------------------------------------------------------------------------- append-only


@pytest.mark.parametrize("table", TABLES)
def test_the_database_refuses_update_delete_and_truncate(
    log_of_ten: PostgresAuditLog, url: str, table: str
) -> None:
    for statement in (
        f"UPDATE {table} SET line = 'x'",
        f"DELETE FROM {table}",
        f"TRUNCATE {table}",
    ):
        with (
            pytest.raises(psycopg.errors.RaiseException, match=f"{table} is append-only"),
            psycopg.connect(url) as connection,
        ):
            connection.execute(statement)
    assert len(rows(url, f"SELECT line FROM {table}")) == (10 if table == TABLES[0] else 1)
    assert verify_database(url, public_keys=[KEY.public_key()]).entries == 10


def test_an_entry_edited_by_a_superuser_is_named(log_of_ten: PostgresAuditLog, url: str) -> None:
    as_superuser(
        url,
        "zdp_audit_entries",
        """UPDATE zdp_audit_entries SET line = replace(line, '"actor":"alice"', '"actor":"mallory"')
           WHERE seq = 7""",
    )

    error = verify(url)

    assert error.seq == 7
    assert str(error) == "entry 7 (deploy-x-prod 9f3a/7): hash does not match its content (edited?)"
    with pytest.raises(AuditLogError, match="zdp audit verify --database"):
        PostgresAuditLog(url, KEY).append(WF, events(1, run="new"))  # a fresh writer reads all


def test_a_deleted_entry_and_a_truncated_tail_are_named(
    log_of_ten: PostgresAuditLog, url: str
) -> None:
    as_superuser(url, "zdp_audit_entries", "DELETE FROM zdp_audit_entries WHERE seq >= 8")
    truncated = verify(url)
    with pytest.raises(AuditLogError, match="rows were removed"):
        log_of_ten.append(WF, events(1, run="new"))  # this writer had seen ten
    as_superuser(url, "zdp_audit_entries", "DELETE FROM zdp_audit_entries WHERE seq = 4")
    deleted = verify(url)

    assert str(truncated) == (
        "entry 8: missing: the log ends here, but checkpoint 0 covers 10 entries (truncated?)"
    )
    assert deleted.seq == 4
    assert str(deleted).startswith("entry 4: missing: line 5 holds entry 5 (deploy-x-prod 9f3a/5)")


def test_a_row_whose_columns_disagree_with_its_line_is_named(
    log_of_ten: PostgresAuditLog, url: str
) -> None:
    as_superuser(
        url, "zdp_audit_entries", "UPDATE zdp_audit_entries SET event_id = 'x/1' WHERE seq = 3"
    )
    assert str(verify(url)) == (
        "entry 3 (deploy-x-prod 9f3a/3): its row says (deploy-x-prod x/1), not what its line "
        "holds (edited?)"
    )


def test_a_forged_checkpoint_is_named(log_of_ten: PostgresAuditLog, url: str) -> None:
    other = Ed25519PrivateKey.generate()
    forger = PostgresAuditLog(url, other)
    forger.append(WF, events(2, start=10))
    forger.checkpoint()

    error = verify(url)

    assert error.checkpoint == 1
    assert "checkpoint 1 (covers 12 entries): signed by unknown key" in str(error)
    forger.close()


# --------------------------------------------------------------------------- CLI


def run(*args: str | Path, home: Path, url: str | None = None) -> Result:
    # No Temporal server to ask for anchors: port 9 refuses at once.
    env = {
        "ZDP_HOME": str(home),
        "ZDP_AUDIT_DATABASE_URL": url or "",
        "TEMPORAL_ADDRESS": "127.0.0.1:9",
    }
    return CliRunner().invoke(cli, [str(a) for a in args], env=env)


def assert_one_line_error(result: Result, contains: str, code: int = 1) -> None:
    assert result.exit_code == code, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert contains in lines[0]


def test_cli_verifies_and_exports_the_database_log(url: str, tmp_path: Path) -> None:
    log = PostgresAuditLog(url, engine_key(tmp_path), checkpoint_every=10)
    log.append(WF, events(10))
    head = log.append(WF, events(2, start=10)).head_hash
    log.checkpoint()  # as the engine signs every append it makes
    summary = (
        f"audit log OK: 12 entries, 2 checkpoints, head {head[:12]}…, last checkpoint covers 12"
    )

    from_env = run("audit", "verify", "--no-temporal", home=tmp_path, url=url)
    explicit = run("audit", "verify", "--no-temporal", "--database", url, home=tmp_path)
    exported = run("audit", "export", "-o", tmp_path / "out", home=tmp_path, url=url)
    offline = run(
        "audit", "verify", "--no-temporal", "--log", tmp_path / "out" / "audit.jsonl", home=tmp_path
    )
    again = run("audit", "export", "--database", url, "-o", tmp_path / "out", home=tmp_path)

    assert [r.stdout.strip() for r in (from_env, explicit)] == [summary] * 2
    # The exported copy is a file: it is cross-checked against the anchors (none here).
    assert offline.stdout.strip() == f"{summary}; no anchors found outside the log"
    assert exported.exit_code == 0, exported.output
    assert exported.stdout.startswith(f"exported 12 entries to {tmp_path / 'out' / 'audit.jsonl'}")
    assert_one_line_error(again, "already exists: export into an empty folder")
    log.close()


def test_cli_errors_are_one_line(url: str, postgres: PostgresServer, tmp_path: Path) -> None:
    log = PostgresAuditLog(url, engine_key(tmp_path))
    log.append(WF, events(5))
    as_superuser(url, "zdp_audit_entries", "DELETE FROM zdp_audit_entries WHERE seq = 2")
    down = f"postgresql://postgres@127.0.0.1:{postgres.port + 1}/nowhere"

    assert_one_line_error(
        run("audit", "verify", "--no-temporal", home=tmp_path, url=url), "entry 2: missing"
    )
    assert_one_line_error(
        run("audit", "verify", "--no-temporal", "--database", down, home=tmp_path), "unavailable"
    )
    assert_one_line_error(
        run(
            "audit", "verify", "--no-temporal", "--database", url, "--log", "x.jsonl", home=tmp_path
        ),
        "not both",
        code=2,
    )
    assert_one_line_error(
        run("audit", "export", "-o", tmp_path, home=tmp_path), "no audit database", code=2
    )
    log.close()


# --------------------------------------------------------------------------- the worker


async def test_the_worker_activity_logs_to_the_database_when_told_to(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ZDP_AUDIT_DATABASE_URL", url)
    compliance = ComplianceActivities(tmp_path)
    timeline = [
        TimelineEvent(at=T0 + timedelta(seconds=i), phase=Phase.verify, kind="k", message=f"m{i}")
        for i in range(4)
    ]
    request = AuditRecordInput(
        workflow_id=WF, run_id="run-1", start_index=0, events=timeline, checkpoint=True
    )

    env = ActivityEnvironment()
    first = await env.run(compliance.record_audit, request)
    retried = await env.run(compliance.record_audit, request)
    bundle = compliance._entries_of(WF, "run-1")

    assert (first.appended, first.size, first.checkpoint_size) == (4, 4, 4)
    assert (retried.appended, retried.size) == (0, 4)
    assert not (tmp_path / "audit").exists()  # nothing went to the file log
    assert [json.loads(line)["event_id"] for line in bundle.splitlines()] == [
        f"run-1/{i}" for i in range(4)
    ]
    report = verify_database(url, public_keys=[engine_key(tmp_path).public_key()])
    assert (report.entries, report.checkpoints, report.head_hash) == (4, 1, first.head_hash)


async def test_a_deployment_is_audited_in_the_database_and_sealed_with_its_entries(
    url: str, kit: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ZDP_AUDIT_DATABASE_URL", url)
    file_log = default_log_path(kit.home)
    file_size = file_log.stat().st_size if file_log.exists() else 0
    async with kit.worker():  # its compliance activities now log to PostgreSQL
        result = await kit.deploy(kit.request("2.0.0"))

    assert result.outcome is Outcome.promoted
    public = engine_key(kit.home).public_key()
    report = verify_database(url, public_keys=[public])
    sealed = result.timeline[-1]
    assert sealed.kind == "evidence_sealed"
    assert report.entries == len(result.timeline) - 1  # all but the sealing itself
    assert report.last_checkpoint is not None and report.last_checkpoint.size == report.entries
    bundle = Path(sealed.data["path"])
    assert verify_bundle(bundle, [public]).trusted_key
    assert (bundle / "audit-entries.jsonl").read_text().splitlines() == rows(url)
    assert (file_log.stat().st_size if file_log.exists() else 0) == file_size
