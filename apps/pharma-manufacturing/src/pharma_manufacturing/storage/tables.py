"""The database schema as this version's code sees it (SQLAlchemy Core tables).

The migrations in `pharma_manufacturing.migrations` create these tables; this module only
describes them for queries. `SCHEMA_REVISION` is the Alembic revision the code needs, and
`KNOWN_REVISIONS` the chain up to it, oldest first. Columns added by an expand migration are
nullable (or have a server default), so the code of the previous revision keeps working.
`audit_trail` and `signatures` are append-only: migration 0001 adds triggers that abort any
UPDATE or DELETE of their rows.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)

SCHEMA_REVISION = "0002"
KNOWN_REVISIONS: tuple[str, ...] = ("0001", "0002")


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp stored as naive UTC and read back timezone-aware (UTC) on every dialect."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("timestamps must be timezone-aware")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)


metadata = MetaData()

batches = Table(
    "batches",
    metadata,
    Column("batch_id", String(32), primary_key=True),
    Column("product", String(200), nullable=False),
    Column("status", String(16), nullable=False),  # in_progress | released
    Column("started_at", UtcDateTime, nullable=False),
    Column("created_by", String(64), nullable=False),
    Column("released_at", UtcDateTime, nullable=True),
    Index("ix_batches_status", "status"),
)

steps = Table(
    "steps",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("batch_id", String(32), ForeignKey("batches.batch_id"), nullable=False),
    Column("sequence", Integer, nullable=False),
    Column("step", String(64), nullable=False),
    Column("operator", String(64), nullable=False),  # the user who signed it "performed"
    Column("parameters", Text, nullable=False),  # a JSON object of numbers
    Column("revision", Integer, nullable=False),  # 1, then +1 for every correction
    Column("idempotency_key", String(128), nullable=False),
    Column("request_sha256", String(64), nullable=False),  # the request, minus the password
    Column("recorded_at", UtcDateTime, nullable=False),
    Column("equipment_id", String(64), nullable=True),  # 0002 (expand)
    UniqueConstraint("batch_id", "sequence", name="uq_steps_batch_sequence"),
    UniqueConstraint("idempotency_key", name="uq_steps_idempotency_key"),
)

signatures = Table(
    "signatures",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("batch_id", String(32), nullable=False),
    Column("record_type", String(16), nullable=False),  # step | batch
    Column("record_key", String(64), nullable=False),  # the step's sequence; the batch id
    Column("record_revision", Integer, nullable=False),
    Column("user_id", String(64), nullable=False),
    Column("printed_name", String(200), nullable=False),
    Column("meaning", String(32), nullable=False),
    Column("signed_at", UtcDateTime, nullable=False),
    Column("content_sha256", String(64), nullable=False),
    Column("hmac_sha256", String(64), nullable=False),
    Index("ix_signatures_batch", "batch_id"),
)

audit_trail = Table(
    "audit_trail",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime, nullable=False),
    Column("user_id", String(64), nullable=False),
    Column("action", String(16), nullable=False),  # create | update
    Column("table_name", String(64), nullable=False),
    Column("record_id", String(64), nullable=False),
    Column("field", String(64), nullable=True),  # null for a create: new_value holds the row
    Column("old_value", Text, nullable=True),
    Column("new_value", Text, nullable=True),
    Column("reason", Text, nullable=True),
    Column("batch_id", String(32), nullable=True),
    Index("ix_audit_trail_batch", "batch_id"),
    Index("ix_audit_trail_record", "table_name", "record_id"),
)

lots = Table(
    "lots",
    metadata,
    Column("lot_id", String(32), primary_key=True),
    Column("kind", String(16), nullable=False),  # material | product
    Column("material", String(200), nullable=False),
    Column("quantity", Float, nullable=False),
    Column("unit", String(16), nullable=False),
    Column("produced_by_batch", String(32), ForeignKey("batches.batch_id"), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("created_by", String(64), nullable=False),
    Index("ix_lots_produced_by_batch", "produced_by_batch"),
)

lot_consumptions = Table(
    "lot_consumptions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("batch_id", String(32), ForeignKey("batches.batch_id"), nullable=False),
    Column("lot_id", String(32), ForeignKey("lots.lot_id"), nullable=False),
    Column("quantity", Float, nullable=False),
    Column("consumed_at", UtcDateTime, nullable=False),
    Column("consumed_by", String(64), nullable=False),
    Index("ix_lot_consumptions_batch", "batch_id"),
    Index("ix_lot_consumptions_lot", "lot_id"),
)

deviations = Table(  # 0002 (expand)
    "deviations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("batch_id", String(32), ForeignKey("batches.batch_id"), nullable=False),
    Column("step_sequence", Integer, nullable=True),
    Column("severity", String(16), nullable=False),  # minor | major | critical
    Column("description", Text, nullable=False),
    Column("status", String(16), nullable=False),  # open | closed
    Column("opened_by", String(64), nullable=False),
    Column("opened_at", UtcDateTime, nullable=False),
    Column("closed_by", String(64), nullable=True),
    Column("closed_at", UtcDateTime, nullable=True),
    Column("resolution", Text, nullable=True),
    Index("ix_deviations_batch", "batch_id"),
)
