"""The PostgreSQL audit log when the database goes away: a real PostgreSQL 15 (tests/pg_outage.py)
whose backend dies in the middle of an append, an append whose commit was not acknowledged, the
server stopped for 10 s in the middle of a deployment, and the server's disk full. Nothing is
lost, nothing is logged twice, and the log verifies."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.kit import APP, Harness
from tests.pg_outage import OutagePostgres, outage_postgres
from tests.pg_server import PostgresUnavailableError
from tests.small_disk import small_disk
from zdp import deployments
from zdp.compliance.audit.jsonl import AuditStorageFull
from zdp.compliance.audit.log import AuditEvent, AuditLogError
from zdp.compliance.audit.postgres import PostgresAuditLog
from zdp.compliance.audit.postgres_verify import verify_database
from zdp.compliance.engine_key import engine_key
from zdp.metrics import REGISTRY
from zdp.models import Outcome, Phase

KEY = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"engine").digest())
WF = "deploy-x-prod"
T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
OUTAGE_S = 10.0


@pytest.fixture(scope="module")
def pg() -> Iterator[OutagePostgres]:
    try:
        with outage_postgres() as server:
            yield server
    except PostgresUnavailableError as err:
        pytest.skip(f"PostgreSQL cannot run here: {err}")


@pytest.fixture
def url(pg: OutagePostgres) -> str:
    if not pg.running:  # a test that stopped it failed before starting it again
        pg.start()
    return pg.create_database("outage")


def events(count: int, start: int = 0) -> list[AuditEvent]:
    return [
        AuditEvent(event_id=f"run-1/{i}", at=T0 + timedelta(seconds=i), kind="k", message=f"{i}")
        for i in range(start, start + count)
    ]


def event_ids(url: str, workflow_id: str = WF) -> list[str]:
    with psycopg.connect(url) as connection:
        query = "SELECT event_id FROM zdp_audit_entries WHERE workflow_id = %s ORDER BY seq"
        return [row[0] for row in connection.execute(query, [workflow_id])]


def kill_other_sessions(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


def test_a_backend_killed_mid_append_leaves_nothing_and_the_retry_logs_each_event_once(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The entries are inserted, then the session dies before the checkpoint and the commit:
    the server rolls the transaction back; the retried append writes them exactly once."""
    log = PostgresAuditLog(url, KEY)
    insert = log._insert_checkpoint
    kills = []

    def die_first(*args: Any, **kwargs: Any) -> Any:
        if not kills:
            kills.append(True)
            kill_other_sessions(url)  # this append's own session, inserts done, not committed
        return insert(*args, **kwargs)

    monkeypatch.setattr(log, "_insert_checkpoint", die_first)
    with pytest.raises(AuditLogError, match="unavailable"):
        log.append(WF, events(5), checkpoint=True)
    assert event_ids(url) == []  # rolled back whole: no partial append

    retried = log.append(WF, events(5), checkpoint=True)
    assert (retried.appended, retried.skipped) == (5, 0)
    assert event_ids(url) == [f"run-1/{i}" for i in range(5)]
    report = verify_database(url, public_keys=[KEY.public_key()])
    assert report.entries == 5 and report.last_checkpoint is not None
    log.close()


def test_a_committed_append_whose_answer_was_lost_is_not_logged_twice(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Committed, but the caller heard an error (the connection broke on the way back): the
    retry, by this process or another worker, finds the rows and adds nothing."""
    log = PostgresAuditLog(url, KEY)
    extend = log._extend_chain

    def answer_lost(appended: Any) -> None:
        monkeypatch.setattr(log, "_extend_chain", extend)
        raise AuditLogError("the connection broke after COMMIT")

    monkeypatch.setattr(log, "_extend_chain", answer_lost)
    with pytest.raises(AuditLogError):
        log.append(WF, events(4), checkpoint=True)
    assert len(event_ids(url)) == 4  # it was committed

    again = log.append(WF, events(4), checkpoint=True)
    elsewhere = PostgresAuditLog(url, KEY).append(WF, events(4), checkpoint=True)
    assert (again.appended, again.skipped) == (0, 4)
    assert (elsewhere.appended, elsewhere.skipped) == (0, 4)
    assert event_ids(url) == [f"run-1/{i}" for i in range(4)]
    assert verify_database(url, public_keys=[KEY.public_key()]).entries == 4
    log.close()


def failures() -> float:
    labels = {"backend": "postgres"}
    return REGISTRY.get_sample_value("zdp_audit_append_failures_total", labels) or 0.0


async def test_the_database_down_for_10_s_mid_deployment_loses_and_doubles_nothing(
    pg: OutagePostgres, url: str, kit: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The appends wait and retry (record_audit, EVIDENCE_RETRY) until the database is back;
    the deployment then finishes, and its entries are its timeline, once each."""
    monkeypatch.setenv("ZDP_AUDIT_DATABASE_URL", url)
    workflow_id = f"deploy-{APP}-dev"
    before = failures()
    async with kit.worker():
        handle = await kit.start(kit.request("2.0.0", bake_seconds=0.5))
        # Past the first append (before provisioning), held at a step while the server stops.
        await kit.wait_for(handle, lambda s: s.phase is Phase.shift, timeout=60)
        await deployments.pause(kit.client, workflow_id, "oncall", "database maintenance")
        await kit.wait_for(handle, lambda s: s.paused, timeout=60)
        assert len(event_ids(url, workflow_id)) > 0
        pg.stop()
        stopped = time.monotonic()
        await deployments.resume(kit.client, workflow_id, "oncall", "go on")
        deadline = stopped + 60
        while failures() == before:  # the final append has failed at least once
            assert time.monotonic() < deadline, "no append was attempted while it was down"
            await asyncio.sleep(0.05)
        assert await deployments.is_running(kit.client, workflow_id)
        await asyncio.sleep(max(0.0, stopped + OUTAGE_S - time.monotonic()))
        pg.start()
        result = await asyncio.wait_for(handle.result(), timeout=120)

    assert result.outcome is Outcome.promoted
    run_id = result.status.run_id
    assert result.timeline[-1].kind == "evidence_sealed"  # comes after the last append
    assert event_ids(url, workflow_id) == [f"{run_id}/{i}" for i in range(len(result.timeline) - 1)]
    report = verify_database(url, public_keys=[engine_key(kit.home).public_key()])
    assert report.entries == len(result.timeline) - 1
    assert report.last_checkpoint is not None and report.last_checkpoint.size == report.entries
    anchor = result.status.audit_anchor
    assert anchor is not None and anchor.size == report.entries
    sealed = Path(result.timeline[-1].data["path"]) / "audit-entries.jsonl"
    in_bundle = [json.loads(line)["event_id"] for line in sealed.read_text().splitlines()]
    assert in_bundle == event_ids(url, workflow_id)


def test_the_database_servers_disk_full_is_storage_full_and_the_retry_logs_once(
    pg: OutagePostgres,
) -> None:
    """The database lives in a tablespace on a small real disk; filled up, the server cannot
    extend the table: AuditStorageFull (the deployment pauses for it), nothing partial."""
    name = f"full_{uuid.uuid4().hex[:8]}"
    # In the cluster's own folder: the server's user must reach it.
    with small_disk(pg.folder / name, size="32m") as disk:
        if pg.owner.uid is not None:
            os.chown(disk.path, pg.owner.uid, pg.owner.gid or 0)
        with psycopg.connect(pg.url(), autocommit=True) as admin:
            admin.execute(f"CREATE TABLESPACE {name} LOCATION '{disk.path}'")
            admin.execute(f'CREATE DATABASE "{name}" TABLESPACE {name}')
        url = pg.url(name)
        try:
            log = PostgresAuditLog(url, KEY)
            log.append(WF, events(2), checkpoint=True)
            disk.fill()
            with pytest.raises(AuditStorageFull) as caught:
                log.append(WF, events(400, start=2), checkpoint=True)
            message = str(caught.value)
            assert message.startswith(f"disk full at audit database postgres@127.0.0.1:{pg.port}/")
            assert "\n" not in message
            assert event_ids(url) == ["run-1/0", "run-1/1"]

            disk.free()
            retried = log.append(WF, events(402), checkpoint=True)
            assert (retried.appended, retried.skipped) == (400, 2)
            assert verify_database(url, public_keys=[KEY.public_key()]).entries == 402
            log.close()
        finally:
            with psycopg.connect(pg.url(), autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                admin.execute(f"DROP TABLESPACE IF EXISTS {name}")
