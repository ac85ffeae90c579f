"""Executed steps: record one (signed, idempotent per key), correct one (with a reason), sign
one again, and verify that its signatures are bound to it.

The signer's password is checked before the write transaction opens: scrypt takes tens of
milliseconds, and the other version sharing the SQLite file must not wait for it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from pharma_manufacturing.models.batches import SignedStep, StepCorrection, StepRequest
from pharma_manufacturing.models.signatures import Signature, SignatureRequest, StepVerification
from pharma_manufacturing.services import audit
from pharma_manufacturing.services.credentials import User, UserDirectory
from pharma_manufacturing.services.errors import (
    AlreadyExistsError,
    IdempotencyConflictError,
    InvalidStateError,
    PermissionDeniedError,
    SignatureNotBoundError,
)
from pharma_manufacturing.services.lookups import (
    Row,
    new_id,
    open_batch_row,
    signature_rows,
    signature_view,
    step_record,
    step_row,
    utc_now,
)
from pharma_manufacturing.services.signatures import (
    RecordRef,
    SignatureSeal,
    authenticate_signer,
    canonical,
    step_content,
)
from pharma_manufacturing.storage.database import Database
from pharma_manufacturing.storage.tables import signatures, steps

# Writers of this version cannot race for a sequence number or an idempotency key: they run one
# at a time (BEGIN IMMEDIATE on SQLite, the PG_WRITE_LOCK advisory lock on PostgreSQL). A writer
# that skips the advisory lock (a release from before it, running beside this one, or a client
# outside the app) still can, and the loser's IntegrityError is retried.
_WRITE_ATTEMPTS = 3


class StepRecords:
    """The steps of batch records, in the database."""

    def __init__(
        self,
        database: Database,
        users: UserDirectory,
        seal: SignatureSeal,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._database = database
        self._users = users
        self._seal = seal
        self._clock = clock

    def record(
        self, requester: User, batch_id: str, key: str, request: StepRequest
    ) -> tuple[SignedStep, bool]:
        """Append the signed step, or return the one this key recorded before (flag: replay)."""
        digest = _request_sha256(batch_id, request)
        with self._database.reading() as connection:
            replay = self._replay(connection, key, batch_id, digest)
            if replay is not None:
                return replay, True
            open_batch_row(connection, batch_id, "take more steps")
        sig = request.signature
        signer = authenticate_signer(self._users, sig.user_id, sig.password, "performed")
        for attempt in range(_WRITE_ATTEMPTS):
            try:
                with self._database.writing() as connection:
                    replay = self._replay(connection, key, batch_id, digest)
                    if replay is not None:
                        return replay, True
                    row = self._insert(connection, requester, signer, batch_id, key, request)
                    return self._signed_step(connection, row), False
            except IntegrityError:
                if attempt == _WRITE_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def correct(
        self, requester: User, batch_id: str, sequence: int, correction: StepCorrection
    ) -> SignedStep:
        """Change an executed step: a new revision, every changed field in the audit trail.

        Its signatures then sign an earlier revision (superseded): the step needs a new
        "performed" signature before the batch can be released.
        """
        reason = audit.require_reason(correction.reason, f"step {sequence} of batch {batch_id}")
        wanted: dict[str, Any] = {}
        if correction.parameters is not None:
            wanted["parameters"] = correction.parameters
        if "equipment_id" in correction.model_fields_set:
            wanted["equipment_id"] = correction.equipment_id
        with self._database.writing() as connection:
            open_batch_row(connection, batch_id, "be corrected")
            row = step_row(connection, batch_id, sequence)
            before = {"parameters": json.loads(row["parameters"]), "revision": row["revision"]}
            before["equipment_id"] = row["equipment_id"]
            changes = {field: value for field, value in wanted.items() if before[field] != value}
            if not changes:
                raise InvalidStateError(
                    f"the correction changes nothing on step {sequence} of batch {batch_id}: "
                    "give the parameters or equipment_id it should have"
                )
            after = {**changes, "revision": row["revision"] + 1}
            stored = {**after}
            if "parameters" in stored:
                stored["parameters"] = json.dumps(stored["parameters"], sort_keys=True)
            changed = connection.execute(
                update(steps)
                .where(steps.c.id == row["id"], steps.c.revision == row["revision"])
                .values(**stored)
            )
            if changed.rowcount != 1:
                raise InvalidStateError(
                    f"step {sequence} of batch {batch_id} changed meanwhile: read it and retry"
                )
            audit.record_changed(
                connection,
                at=self._clock(),
                user_id=requester.user_id,
                table="steps",
                record_id=f"{batch_id}/{sequence}",
                before=before,
                after=after,
                reason=reason,
                batch_id=batch_id,
            )
            return self._signed_step(connection, step_row(connection, batch_id, sequence))

    def sign(
        self, requester: User, batch_id: str, sequence: int, request: SignatureRequest
    ) -> Signature:
        """Add a signature ("performed" again after a correction, or "verified")."""
        if request.meaning == "approved":
            raise InvalidStateError(
                "'approved' is given to the whole batch record at release "
                f"(POST /api/batches/{batch_id}/release), not to one step"
            )
        with self._database.reading() as connection:
            open_batch_row(connection, batch_id, "take more signatures")
            step_row(connection, batch_id, sequence)
        signer = authenticate_signer(
            self._users, request.user_id, request.password, request.meaning
        )
        with self._database.writing() as connection:
            open_batch_row(connection, batch_id, "take more signatures")
            row = step_row(connection, batch_id, sequence)
            current = [
                s
                for s in signature_rows(connection, batch_id, "step", str(sequence))
                if s["record_revision"] == row["revision"]
            ]
            if any(
                s["user_id"] == signer.user_id and s["meaning"] == request.meaning for s in current
            ):
                raise AlreadyExistsError(
                    f"{signer.user_id} already signed step {sequence} of batch {batch_id} "
                    f"(revision {row['revision']}) as '{request.meaning}'"
                )
            performers = {s["user_id"] for s in current if s["meaning"] == "performed"}
            if request.meaning == "verified" and signer.user_id in performers:
                raise PermissionDeniedError(
                    f"{signer.user_id} performed step {sequence} of batch {batch_id}, so cannot "
                    "also verify it: a second person verifies"
                )
            signature_id = self._insert_signature(
                connection, requester, signer, row, request.meaning
            )
            stored = signature_rows(connection, batch_id, "step", str(sequence))
            return signature_view(
                self._seal, next(s for s in stored if s["id"] == signature_id), row
            )

    def verify(self, batch_id: str, sequence: int) -> StepVerification:
        """Check every signature on the step; SignatureNotBoundError if one is not bound."""
        with self._database.reading() as connection:
            row = step_row(connection, batch_id, sequence)
            report = self._verification(connection, row)
        broken = [s for s in report.signatures if s.status == "not_bound"]
        if broken:
            first = broken[0]
            raise SignatureNotBoundError(
                f"signature {first.id} ({first.meaning} by {first.user_id}) is not bound to step "
                f"{sequence} of batch {batch_id}: {first.problem}",
                verification=report.model_dump(mode="json"),
            )
        return report

    def _verification(self, connection: Connection, row: Row) -> StepVerification:
        key = str(row["sequence"])
        views = [
            signature_view(self._seal, s, row)
            for s in signature_rows(connection, row["batch_id"], "step", key)
        ]
        return StepVerification(
            batch_id=row["batch_id"],
            sequence=row["sequence"],
            revision=row["revision"],
            verified=all(s.verified for s in views),
            signed=any(s.status == "bound" and s.meaning == "performed" for s in views),
            signatures=views,
        )

    def _replay(
        self, connection: Connection, key: str, batch_id: str, digest: str
    ) -> SignedStep | None:
        row = (
            connection.execute(select(steps).where(steps.c.idempotency_key == key))
            .mappings()
            .first()
        )
        if row is None:
            return None
        if row["batch_id"] != batch_id or row["request_sha256"] != digest:
            raise IdempotencyConflictError(
                f"Idempotency-Key '{key}' was already used for a different step: "
                "use a new key for a new step"
            )
        return self._signed_step(connection, row)

    def _insert(
        self,
        connection: Connection,
        requester: User,
        signer: User,
        batch_id: str,
        key: str,
        request: StepRequest,
    ) -> dict[str, Any]:
        open_batch_row(connection, batch_id, "take more steps")
        last = connection.execute(
            select(func.max(steps.c.sequence)).where(steps.c.batch_id == batch_id)
        ).scalar()
        now = self._clock()
        values: dict[str, Any] = {
            "batch_id": batch_id,
            "sequence": (last or 0) + 1,
            "step": request.step,
            "operator": signer.user_id,
            "parameters": json.dumps(request.parameters, sort_keys=True),
            "revision": 1,
            "idempotency_key": key,
            "request_sha256": _request_sha256(batch_id, request),
            "recorded_at": now,
            "equipment_id": request.equipment_id,
        }
        values["id"] = new_id(connection.execute(insert(steps).values(values)))
        audit.record_created(
            connection,
            at=now,
            user_id=requester.user_id,
            table="steps",
            record_id=f"{batch_id}/{values['sequence']}",
            values={
                **{k: v for k, v in values.items() if k not in ("id", "request_sha256")},
                "parameters": request.parameters,
            },
            batch_id=batch_id,
        )
        self._insert_signature(connection, requester, signer, values, "performed")
        return values

    def _insert_signature(
        self, connection: Connection, requester: User, signer: User, row: Row, meaning: str
    ) -> int:
        now = self._clock()
        ref = RecordRef("step", row["batch_id"], str(row["sequence"]), row["revision"])
        values = self._seal.sign(ref, step_content(row), signer, meaning, now)
        signature_id = new_id(connection.execute(insert(signatures).values(values)))
        audit.record_created(
            connection,
            at=now,
            user_id=requester.user_id,
            table="signatures",
            record_id=str(signature_id),
            values={k: v for k, v in values.items() if k != "hmac_sha256"},
            batch_id=row["batch_id"],
        )
        return int(signature_id)

    def _signed_step(self, connection: Connection, row: Row) -> SignedStep:
        report = self._verification(connection, row)
        return SignedStep(**step_record(row).model_dump(), signatures=report.signatures)


def _request_sha256(batch_id: str, request: StepRequest) -> str:
    """What makes two submissions "the same step": everything but the password."""
    submitted = request.model_dump(exclude={"signature": {"password"}})
    return hashlib.sha256(canonical({"batch_id": batch_id, **submitted})).hexdigest()
