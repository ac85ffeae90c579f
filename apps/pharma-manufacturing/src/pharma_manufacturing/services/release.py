"""Batch release: QA signs the whole record "approved" once it is complete and intact.

A batch is released only when every signature on it is bound to its record, every step's
current revision carries a bound "performed" signature, and no deviation is open. The release
may book the product lot the batch yielded, which starts that lot's genealogy.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Connection, func, insert, select, update

from pharma_manufacturing.models.batches import BatchRecord, ReleaseRequest
from pharma_manufacturing.services import audit
from pharma_manufacturing.services.batches import BatchRecords
from pharma_manufacturing.services.credentials import User, UserDirectory
from pharma_manufacturing.services.errors import (
    AlreadyExistsError,
    OpenDeviationsError,
    SignatureNotBoundError,
    StepNotSignedError,
)
from pharma_manufacturing.services.lookups import (
    Row,
    new_id,
    open_batch_row,
    signature_rows,
    utc_now,
)
from pharma_manufacturing.services.signatures import (
    RecordRef,
    SignatureSeal,
    authenticate_signer,
    batch_content,
    step_content,
)
from pharma_manufacturing.storage.database import Database
from pharma_manufacturing.storage.tables import batches, deviations, lots, signatures, steps


class BatchRelease:
    """Releases batches; the only way a batch record closes."""

    def __init__(
        self,
        database: Database,
        users: UserDirectory,
        seal: SignatureSeal,
        records: BatchRecords,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._database = database
        self._users = users
        self._seal = seal
        self._records = records
        self._clock = clock

    def release(self, requester: User, batch_id: str, request: ReleaseRequest) -> BatchRecord:
        with self._database.reading() as connection:
            open_batch_row(connection, batch_id, "be released again")
        sig = request.signature
        signer = authenticate_signer(self._users, sig.user_id, sig.password, "approved")
        with self._database.writing() as connection:
            batch = open_batch_row(connection, batch_id, "be released again")
            self._check_complete(connection, batch_id)
            now = self._clock()
            connection.execute(
                update(batches)
                .where(batches.c.batch_id == batch_id, batches.c.status == "in_progress")
                .values(status="released", released_at=now)
            )
            released = {**batch, "status": "released", "released_at": now}
            approval = self._seal.sign(
                RecordRef("batch", batch_id, batch_id, 1),
                batch_content(released),
                signer,
                "approved",
                now,
            )
            signature_id = new_id(connection.execute(insert(signatures).values(approval)))
            audit.record_created(
                connection,
                at=now,
                user_id=requester.user_id,
                table="signatures",
                record_id=str(signature_id),
                values={k: v for k, v in approval.items() if k != "hmac_sha256"},
                batch_id=batch_id,
            )
            audit.record_changed(
                connection,
                at=now,
                user_id=requester.user_id,
                table="batches",
                record_id=batch_id,
                before={"status": batch["status"], "released_at": None},
                after={"status": "released", "released_at": now},
                reason=f"released: approved by {signer.user_id} (signature {signature_id})",
                batch_id=batch_id,
            )
            if request.product_lot is not None:
                self._book_product_lot(connection, requester, batch, request, now)
        return self._records.record(batch_id)

    def _check_complete(self, connection: Connection, batch_id: str) -> None:
        step_rows = {
            str(row["sequence"]): row
            for row in connection.execute(
                select(steps).where(steps.c.batch_id == batch_id)
            ).mappings()
        }
        performed: set[str] = set()
        for row in signature_rows(connection, batch_id, "step"):
            step = step_rows.get(row["record_key"])
            check = self._seal.check(row, step_content(step)) if step else None
            if check is None or check.status == "not_bound":
                problem = check.problem if check else "it sits on no step of this batch"
                raise SignatureNotBoundError(
                    f"batch '{batch_id}' cannot be released: signature {row['id']} "
                    f"({row['meaning']} by {row['user_id']}) is not bound to step "
                    f"{row['record_key']}: {problem}"
                )
            if check.status == "bound" and row["meaning"] == "performed":
                performed.add(row["record_key"])
        unsigned = sorted((k for k in step_rows if k not in performed), key=int)
        if unsigned:
            raise StepNotSignedError(
                f"batch '{batch_id}' cannot be released: step(s) {', '.join(unsigned)} carry no "
                "bound 'performed' signature on their current revision; sign them first"
            )
        open_count = connection.execute(
            select(func.count())
            .select_from(deviations)
            .where(deviations.c.batch_id == batch_id, deviations.c.status == "open")
        ).scalar_one()
        if open_count:
            raise OpenDeviationsError(
                f"batch '{batch_id}' cannot be released: {open_count} deviation(s) are open; "
                "close them with a resolution first"
            )

    def _book_product_lot(
        self,
        connection: Connection,
        requester: User,
        batch: Row,
        request: ReleaseRequest,
        now: datetime,
    ) -> None:
        lot = request.product_lot
        assert lot is not None
        taken = connection.execute(select(lots.c.lot_id).where(lots.c.lot_id == lot.lot_id)).first()
        if taken:
            raise AlreadyExistsError(
                f"lot '{lot.lot_id}' already exists: name the product lot anew"
            )
        values = {
            "lot_id": lot.lot_id,
            "kind": "product",
            "material": batch["product"],
            "quantity": lot.quantity,
            "unit": lot.unit,
            "produced_by_batch": batch["batch_id"],
            "created_at": now,
            "created_by": requester.user_id,
        }
        connection.execute(insert(lots).values(values))
        audit.record_created(
            connection,
            at=now,
            user_id=requester.user_id,
            table="lots",
            record_id=lot.lot_id,
            values=values,
            batch_id=batch["batch_id"],
        )
