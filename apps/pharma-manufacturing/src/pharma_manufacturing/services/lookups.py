"""What the record services share: row lookups (a missing record is a NotFoundError naming
it), row-to-model conversions, new ids and the clock."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, CursorResult, select

from pharma_manufacturing.models.batches import StepRecord
from pharma_manufacturing.models.signatures import Signature
from pharma_manufacturing.services.errors import BatchReleasedError, NotFoundError
from pharma_manufacturing.services.signatures import (
    SignatureSeal,
    batch_content,
    manifestation,
    step_content,
)
from pharma_manufacturing.storage.tables import batches, signatures, steps

Row = Mapping[Any, Any]  # a result row (RowMapping) or a dict of column values


def new_id(result: CursorResult[Any]) -> int:
    """The primary key an INSERT just generated."""
    key = result.inserted_primary_key
    if key is None:
        raise RuntimeError("the INSERT returned no primary key")
    return int(key[0])


def utc_now() -> datetime:
    return datetime.now(UTC)


def batch_row(connection: Connection, batch_id: str) -> Row:
    row = connection.execute(select(batches).where(batches.c.batch_id == batch_id)).mappings()
    found = row.first()
    if found is None:
        raise NotFoundError(f"no batch '{batch_id}'")
    return found


def open_batch_row(connection: Connection, batch_id: str, action: str) -> Row:
    """The batch, if it still takes changes: a released batch record is closed."""
    row = batch_row(connection, batch_id)
    if row["status"] == "released":
        raise BatchReleasedError(f"batch '{batch_id}' is released: its record cannot {action}")
    return row


def step_row(connection: Connection, batch_id: str, sequence: int) -> Row:
    query = select(steps).where(steps.c.batch_id == batch_id, steps.c.sequence == sequence)
    found = connection.execute(query).mappings().first()
    if found is None:
        batch_row(connection, batch_id)  # say which is missing: the batch, or the step
        raise NotFoundError(f"batch '{batch_id}' has no step {sequence}")
    return found


def signature_rows(
    connection: Connection, batch_id: str, record_type: str | None = None, key: str | None = None
) -> list[Row]:
    """The signatures on the batch and its steps (one query), oldest first; narrowed to one
    record type, and one record, when given."""
    query = select(signatures).where(signatures.c.batch_id == batch_id)
    if record_type is not None:
        query = query.where(signatures.c.record_type == record_type)
    if key is not None:
        query = query.where(signatures.c.record_key == key)
    return list(connection.execute(query.order_by(signatures.c.id)).mappings())


def step_record(row: Row) -> StepRecord:
    return StepRecord(
        sequence=row["sequence"],
        step=row["step"],
        operator=row["operator"],
        parameters=json.loads(row["parameters"]),
        equipment_id=row["equipment_id"],
        revision=row["revision"],
        idempotency_key=row["idempotency_key"],
        recorded_at=row["recorded_at"],
    )


def signature_view(seal: SignatureSeal, row: Row, record: Row) -> Signature:
    """A stored signature, verified against the current content of `record` (step or batch)."""
    content = step_content(record) if row["record_type"] == "step" else batch_content(record)
    check = seal.check(row, content)
    return Signature(
        id=row["id"],
        record_type=row["record_type"],
        record_key=row["record_key"],
        record_revision=row["record_revision"],
        user_id=row["user_id"],
        printed_name=row["printed_name"],
        meaning=row["meaning"],
        signed_at=row["signed_at"],
        manifestation=manifestation(
            row["printed_name"], row["user_id"], row["signed_at"], row["meaning"]
        ),
        status=check.status,
        verified=check.status != "not_bound",
        problem=check.problem,
    )
