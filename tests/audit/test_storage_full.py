"""The audit log's storage full: on a real full disk (a small tmpfs) an append is
AuditStorageFull and leaves nothing partial; once there is room the same append goes through
exactly once; the activity fails it at once (not retried) with its own type, and counts it."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.compliance import AUDIT_STORAGE_FULL, ComplianceActivities
from tests.small_disk import SmallDisk, small_disk
from zdp.compliance.audit import jsonl
from zdp.compliance.audit.jsonl import AuditStorageFull
from zdp.compliance.audit.log import (
    AuditEvent,
    AuditLog,
    AuditLogError,
    checkpoints_path_for,
    default_log_path,
    verify_log,
)
from zdp.compliance.engine_key import engine_key
from zdp.metrics import REGISTRY
from zdp.models import AuditRecordInput, Phase, TimelineEvent

KEY = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"engine").digest())
WF = "deploy-x-prod"
T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


def events(count: int, start: int = 0) -> list[AuditEvent]:
    return [
        AuditEvent(
            event_id=f"run-1/{i}",
            at=T0 + timedelta(seconds=i),
            kind="phase",
            message=f"step {i} " + "x" * 200,  # many of them outgrow a page's slack
            data={"index": i},
        )
        for i in range(start, start + count)
    ]


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[SmallDisk]:
    with small_disk(tmp_path / "audit") as mounted:
        yield mounted


def test_a_full_disk_is_storage_full_and_leaves_nothing_partial(disk: SmallDisk) -> None:
    path = disk.path / "audit.jsonl"
    log = AuditLog(path, KEY, checkpoint_every=0)
    log.append(WF, events(3), checkpoint=True)
    size = path.stat().st_size
    disk.fill()

    with pytest.raises(AuditStorageFull) as caught:
        log.append(WF, events(40, start=3), checkpoint=True)

    assert str(caught.value) == f"disk full at {path} (No space left on device)"
    assert isinstance(caught.value, AuditLogError)  # callers that knew only that still work
    assert path.stat().st_size == size  # no partial line stays behind
    assert verify_log(path, public_keys=[KEY.public_key()]).entries == 3

    disk.free()
    retried = log.append(WF, events(43), checkpoint=True)  # the same events, from the start
    assert (retried.appended, retried.skipped) == (40, 3)
    report = verify_log(path, public_keys=[KEY.public_key()])
    assert report.entries == 43
    assert report.last_checkpoint is not None and report.last_checkpoint.size == 43


def test_a_new_log_on_a_full_disk_is_storage_full(disk: SmallDisk) -> None:
    disk.fill()
    with pytest.raises(AuditStorageFull, match=r"^disk full at "):
        AuditLog(disk.path / "audit.jsonl", KEY).append(WF, events(1))


def test_entries_written_before_the_disk_filled_are_signed_by_the_retry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The entries fit, their checkpoint does not: the retry skips the entries and signs."""
    path = tmp_path / "audit" / "audit.jsonl"
    write = jsonl._append_bytes

    def checkpoint_does_not_fit(target: Path, data: bytes, expected_size: int) -> None:
        if target == checkpoints_path_for(path):
            raise AuditStorageFull(f"disk full at {target} (No space left on device)")
        write(target, data, expected_size)

    monkeypatch.setattr(jsonl, "_append_bytes", checkpoint_does_not_fit)
    with pytest.raises(AuditStorageFull):
        AuditLog(path, KEY).append(WF, events(5), checkpoint=True)
    monkeypatch.setattr(jsonl, "_append_bytes", write)

    retried = AuditLog(path, KEY).append(WF, events(5), checkpoint=True)
    assert (retried.appended, retried.skipped) == (0, 5)
    assert retried.checkpoint is not None and retried.checkpoint.size == 5
    assert verify_log(path, public_keys=[KEY.public_key()]).entries == 5


def failures(backend: str) -> float:
    return REGISTRY.get_sample_value("zdp_audit_append_failures_total", {"backend": backend}) or 0


async def test_the_activity_fails_at_once_with_its_own_type_and_counts_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ZDP_AUDIT_DATABASE_URL", raising=False)
    engine_key(tmp_path)  # the key lives beside the audit folder, not on the full disk
    timeline = [
        TimelineEvent(at=T0, phase=Phase.verify, kind="k", message="m" * 300) for _ in range(20)
    ]
    request = AuditRecordInput(
        workflow_id=WF, run_id="run-1", start_index=0, events=timeline, checkpoint=True
    )
    before = failures("file")
    with small_disk(default_log_path(tmp_path).parent) as full:
        full.fill()
        with pytest.raises(ApplicationError) as caught:
            await ActivityEnvironment().run(ComplianceActivities(tmp_path).record_audit, request)
    error = caught.value
    assert (error.type, error.non_retryable) == (AUDIT_STORAGE_FULL, True)
    assert error.message.startswith(f"disk full at {default_log_path(tmp_path)}")
    assert failures("file") == before + 1
