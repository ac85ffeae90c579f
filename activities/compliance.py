"""Activities: append timeline events to the audit log, and seal the evidence bundle.

Both are idempotent: the audit log skips (workflow id, event id) pairs it already holds, and
sealing the same bundle again returns the sealed one. The workflow retries them until they
succeed: a deployment does not close without its evidence. The log is the JSON-lines file in
$ZDP_HOME/audit, or PostgreSQL when ZDP_AUDIT_DATABASE_URL is set. One failure is not retried
here: storage that is full (AUDIT_STORAGE_FULL) waits for an operator, so the workflow pauses.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import time
from datetime import UTC, datetime
from pathlib import Path

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities._support import to_application_error
from zdp.compliance.audit.jsonl import AuditStorageFull
from zdp.compliance.audit.log import (
    AuditEvent,
    AuditStore,
    evidence_dir,
    open_store,
)
from zdp.compliance.engine_key import engine_key
from zdp.compliance.evidence import seal_bundle
from zdp.errors import ZdpError
from zdp.forensics.report import render_html, render_markdown
from zdp.metrics import AUDIT_APPENDS, AUDIT_EVENTS, AUDIT_FAILURES, EVIDENCE_SEAL
from zdp.models import (
    AuditAnchor,
    AuditReceipt,
    AuditRecordInput,
    EvidenceReceipt,
    SealEvidenceInput,
)
from zdp.settings import settings
from zdp.signing import fingerprint

# The error type record_audit fails with, not retried, when the audit storage is full: retrying
# cannot free space, and a retry loop would stall the deployment where nobody sees it.
AUDIT_STORAGE_FULL = "AuditStorageFull"


def _event_id(run_id: str, index: int) -> str:
    return f"{run_id}/{index}"


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


class ComplianceActivities:
    def __init__(self, home: Path | None = None) -> None:
        self.home = home
        self._log: AuditStore | None = None

    def log(self) -> AuditStore:
        """One audit store per worker process: it indexes what it holds on first use."""
        if self._log is None:
            self._log = open_store(self.home)
        return self._log

    @activity.defn
    async def record_audit(self, request: AuditRecordInput) -> AuditReceipt:
        """Append these timeline events (a retry appends nothing twice); checkpoint if asked."""
        events = [
            AuditEvent(
                event_id=_event_id(request.run_id, request.start_index + i),
                at=_aware(e.at),
                kind=e.kind,
                message=e.message,
                actor=e.actor,
                data={"phase": e.phase.value, **e.data},
            )
            for i, e in enumerate(request.events)
        ]
        backend = "postgres" if self._postgres() else "file"
        try:
            log = await asyncio.to_thread(self.log)
            result = await asyncio.to_thread(
                functools.partial(
                    log.append, request.workflow_id, events, checkpoint=request.checkpoint
                )
            )
        except AuditStorageFull as err:
            AUDIT_FAILURES.labels(backend).inc()
            raise ApplicationError(str(err), type=AUDIT_STORAGE_FULL, non_retryable=True) from None
        except ZdpError as err:
            AUDIT_FAILURES.labels(backend).inc()
            raise to_application_error(err) from None
        except Exception:
            AUDIT_FAILURES.labels(backend).inc()
            raise
        AUDIT_APPENDS.labels(backend).inc()
        AUDIT_EVENTS.labels(backend).inc(result.appended)
        checkpoint = result.checkpoint
        return AuditReceipt(
            appended=result.appended,
            size=result.size,
            head_hash=result.head_hash,
            checkpoint_size=checkpoint.size if checkpoint else None,
            anchor=AuditAnchor(**checkpoint.model_dump(), first_hash=result.first_hash)
            if checkpoint
            else None,
        )

    @activity.defn
    async def seal_evidence(self, request: SealEvidenceInput) -> EvidenceReceipt:
        """Seal the history export, timeline, reports, audit entries and signatures, signed."""
        started = time.perf_counter()
        handle = activity.client().get_workflow_handle(request.workflow_id, run_id=request.run_id)
        history = await handle.fetch_history()
        result = request.result
        files = {
            "history.json": history.to_json().encode(),
            "result.json": result.model_dump_json(indent=2).encode(),
            "report.md": render_markdown(result).encode(),
            "report.html": render_html(result).encode(),
            "audit-entries.jsonl": await asyncio.to_thread(
                self._entries_of, request.workflow_id, request.run_id
            ),
            "signatures.json": json.dumps(
                {
                    "release_envelope": request.release.model_dump(mode="json"),
                    "approvals": [a.model_dump(mode="json") for a in result.status.approvals],
                },
                indent=2,
                sort_keys=True,
            ).encode(),
        }
        try:
            key = await asyncio.to_thread(engine_key, self.home)
            path = await asyncio.to_thread(
                seal_bundle,
                evidence_dir(self.home) / request.workflow_id,
                request.run_id,
                files,
                key,
                {
                    "workflow_id": request.workflow_id,
                    "run_id": request.run_id,
                    "app": result.status.app,
                    "environment": result.status.environment,
                    "version": result.status.version,
                    "outcome": result.outcome.value,
                },
            )
        except ZdpError as err:
            raise to_application_error(err) from None
        manifest = (path / "MANIFEST.json").read_bytes()
        EVIDENCE_SEAL.observe(time.perf_counter() - started)
        return EvidenceReceipt(
            path=str(path),
            files=len(files),
            manifest_sha256=hashlib.sha256(manifest).hexdigest(),
            key_fingerprint=fingerprint(key.public_key()),
        )

    @staticmethod
    def _postgres() -> bool:
        """Which backend the log is on, for the metrics' `backend` label."""
        return settings().AUDIT_DATABASE_URL is not None

    def _entries_of(self, workflow_id: str, run_id: str) -> bytes:
        """This run's lines of the audit log, exactly as stored (each verifiable alone)."""
        return self.log().entries_of(workflow_id, f"{run_id}/")
