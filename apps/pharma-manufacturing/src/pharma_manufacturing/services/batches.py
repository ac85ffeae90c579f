"""Batch records: start a batch, read it (small and fast, or whole), and the line's status.

`get` is the read the engine samples at hundreds of requests per second on both slots: two
indexed queries (the batch by primary key, its steps by batch and sequence), no per-step query.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select

from pharma_manufacturing.models.audit import AuditEntry
from pharma_manufacturing.models.batches import (
    Batch,
    BatchCreate,
    BatchInProgress,
    BatchRecord,
    LineStatus,
    SignedStep,
)
from pharma_manufacturing.models.deviations import Deviation
from pharma_manufacturing.models.genealogy import Consumption, Lot
from pharma_manufacturing.services import audit
from pharma_manufacturing.services.credentials import User
from pharma_manufacturing.services.errors import AlreadyExistsError
from pharma_manufacturing.services.lookups import (
    Row,
    batch_row,
    signature_rows,
    signature_view,
    step_record,
    utc_now,
)
from pharma_manufacturing.services.signatures import SignatureSeal
from pharma_manufacturing.storage.database import Database
from pharma_manufacturing.storage.tables import (
    batches,
    deviations,
    lot_consumptions,
    lots,
    steps,
)

STARTERS = ("supervisor", "qa")  # roles that may start a batch


class BatchRecords:
    """Batches in the database, with their steps and everything recorded against them."""

    def __init__(
        self, database: Database, seal: SignatureSeal, clock: Callable[[], datetime] = utc_now
    ) -> None:
        self._database = database
        self._seal = seal
        self._clock = clock

    def get(self, batch_id: str) -> Batch:
        with self._database.reading() as connection:
            batch = batch_row(connection, batch_id)
            step_rows = connection.execute(
                select(steps).where(steps.c.batch_id == batch_id).order_by(steps.c.sequence)
            ).mappings()
            return Batch(**_batch_fields(batch), steps=[step_record(row) for row in step_rows])

    def record(self, batch_id: str) -> BatchRecord:
        """The whole record: one query per kind of thing, whatever the number of steps."""
        with self._database.reading() as connection:
            batch = batch_row(connection, batch_id)
            step_rows = list(
                connection.execute(
                    select(steps).where(steps.c.batch_id == batch_id).order_by(steps.c.sequence)
                ).mappings()
            )
            by_key: dict[tuple[str, str], Row] = {
                ("step", str(row["sequence"])): row for row in step_rows
            }
            by_key[("batch", batch_id)] = batch
            views: dict[tuple[str, str], list[Any]] = {}
            for row in signature_rows(connection, batch_id):
                key = (row["record_type"], row["record_key"])
                record = by_key.get(key)
                if record is not None:
                    views.setdefault(key, []).append(signature_view(self._seal, row, record))
            deviation_rows = connection.execute(
                select(deviations)
                .where(deviations.c.batch_id == batch_id)
                .order_by(deviations.c.id)
            ).mappings()
            consumption_rows = connection.execute(
                select(lot_consumptions)
                .where(lot_consumptions.c.batch_id == batch_id)
                .order_by(lot_consumptions.c.id)
            ).mappings()
            product_rows = connection.execute(
                select(lots).where(lots.c.produced_by_batch == batch_id).order_by(lots.c.lot_id)
            ).mappings()
            return BatchRecord(
                **_batch_fields(batch),
                steps=[
                    SignedStep(
                        **step_record(row).model_dump(),
                        signatures=views.get(("step", str(row["sequence"])), []),
                    )
                    for row in step_rows
                ],
                approvals=views.get(("batch", batch_id), []),
                deviations=[Deviation(**row) for row in deviation_rows],
                consumed_lots=[Consumption(**row) for row in consumption_rows],
                product_lots=[Lot(**row) for row in product_rows],
            )

    def create(self, requester: User, request: BatchCreate) -> Batch:
        requester.require_role(STARTERS, "start a batch")
        now = self._clock()
        values = {
            "batch_id": request.batch_id,
            "product": request.product,
            "status": "in_progress",
            "started_at": now,
            "created_by": requester.user_id,
            "released_at": None,
        }
        with self._database.writing() as connection:
            exists = connection.execute(
                select(batches.c.batch_id).where(batches.c.batch_id == request.batch_id)
            ).first()
            if exists:
                raise AlreadyExistsError(f"batch '{request.batch_id}' already exists")
            connection.execute(insert(batches).values(values))
            audit.record_created(
                connection,
                at=now,
                user_id=requester.user_id,
                table="batches",
                record_id=request.batch_id,
                values=values,
                batch_id=request.batch_id,
            )
        return Batch.model_validate(values)

    def audit_trail(self, batch_id: str) -> list[AuditEntry]:
        """Every audit-trail entry about the batch and the records in it, oldest first."""
        with self._database.reading() as connection:
            batch_row(connection, batch_id)
            return [AuditEntry(**entry) for entry in audit.entries_for_batch(connection, batch_id)]

    def line_status(self) -> LineStatus:
        """Every batch in progress, oldest first (the engine's work-in-progress check)."""
        with self._database.reading() as connection:
            rows = connection.execute(
                select(batches.c.batch_id, batches.c.product, batches.c.started_at)
                .where(batches.c.status == "in_progress")
                .order_by(batches.c.started_at, batches.c.batch_id)
            ).mappings()
            in_progress = [BatchInProgress(**row) for row in rows]
        return LineStatus(batches_in_progress=in_progress, checked_at=self._clock())


def _batch_fields(row: Row) -> dict[str, Any]:
    fields = ("batch_id", "product", "status", "started_at", "released_at", "created_by")
    return {field: row[field] for field in fields}
