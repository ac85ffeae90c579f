"""0001 base schema: batches, steps, signatures, the audit trail, lots and their consumption.

The audit trail and the signatures are append-only in the database itself: a trigger aborts
any UPDATE or DELETE of their rows (and, on PostgreSQL, a TRUNCATE), whoever sends it.
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

APPEND_ONLY = ("audit_trail", "signatures")


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("batch_id", sa.String(32), primary_key=True),
        sa.Column("product", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("released_at", sa.DateTime(), nullable=True),
    )
    op.create_index("ix_batches_status", "batches", ["status"])
    op.create_table(
        "steps",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("batch_id", sa.String(32), sa.ForeignKey("batches.batch_id"), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("step", sa.String(64), nullable=False),
        sa.Column("operator", sa.String(64), nullable=False),
        sa.Column("parameters", sa.Text(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.String(128), nullable=False),
        sa.Column("request_sha256", sa.String(64), nullable=False),
        sa.Column("recorded_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("batch_id", "sequence", name="uq_steps_batch_sequence"),
        sa.UniqueConstraint("idempotency_key", name="uq_steps_idempotency_key"),
    )
    op.create_table(
        "signatures",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("batch_id", sa.String(32), nullable=False),
        sa.Column("record_type", sa.String(16), nullable=False),
        sa.Column("record_key", sa.String(64), nullable=False),
        sa.Column("record_revision", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("printed_name", sa.String(200), nullable=False),
        sa.Column("meaning", sa.String(32), nullable=False),
        sa.Column("signed_at", sa.DateTime(), nullable=False),
        sa.Column("content_sha256", sa.String(64), nullable=False),
        sa.Column("hmac_sha256", sa.String(64), nullable=False),
    )
    op.create_index("ix_signatures_batch", "signatures", ["batch_id"])
    op.create_table(
        "audit_trail",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("table_name", sa.String(64), nullable=False),
        sa.Column("record_id", sa.String(64), nullable=False),
        sa.Column("field", sa.String(64), nullable=True),
        sa.Column("old_value", sa.Text(), nullable=True),
        sa.Column("new_value", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("batch_id", sa.String(32), nullable=True),
    )
    op.create_index("ix_audit_trail_batch", "audit_trail", ["batch_id"])
    op.create_index("ix_audit_trail_record", "audit_trail", ["table_name", "record_id"])
    op.create_table(
        "lots",
        sa.Column("lot_id", sa.String(32), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("material", sa.String(200), nullable=False),
        sa.Column("quantity", sa.Float(), nullable=False),
        sa.Column("unit", sa.String(16), nullable=False),
        sa.Column(
            "produced_by_batch", sa.String(32), sa.ForeignKey("batches.batch_id"), nullable=True
        ),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
    )
    op.create_index("ix_lots_produced_by_batch", "lots", ["produced_by_batch"])
    op.create_table(
        "lot_consumptions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("batch_id", sa.String(32), sa.ForeignKey("batches.batch_id"), nullable=False),
        sa.Column("lot_id", sa.String(32), sa.ForeignKey("lots.lot_id"), nullable=False),
        sa.Column("quantity", sa.Float(), nullable=False),
        sa.Column("consumed_at", sa.DateTime(), nullable=False),
        sa.Column("consumed_by", sa.String(64), nullable=False),
    )
    op.create_index("ix_lot_consumptions_batch", "lot_consumptions", ["batch_id"])
    op.create_index("ix_lot_consumptions_lot", "lot_consumptions", ["lot_id"])
    for table in APPEND_ONLY:
        _make_append_only(table)


def downgrade() -> None:
    for table in APPEND_ONLY:
        _drop_append_only(table)
    for table in ("lot_consumptions", "lots", "audit_trail", "signatures", "steps", "batches"):
        op.drop_table(table)


def _make_append_only(table: str) -> None:
    dialect = op.get_bind().dialect.name
    message = f"{table} is append-only: rows are never changed or removed"
    if dialect == "sqlite":
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{message}'); END"
            )
    elif dialect == "postgresql":
        op.execute(
            f"CREATE FUNCTION {table}_append_only() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN RAISE EXCEPTION '{message}'; END $$"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_change BEFORE UPDATE OR DELETE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION {table}_append_only()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {table}_append_only()"
        )
    else:
        raise NotImplementedError(f"no append-only trigger for {dialect}: use SQLite or PostgreSQL")


def _drop_append_only(table: str) -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_update")
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete")
    elif dialect == "postgresql":
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_change ON {table}")
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        op.execute(f"DROP FUNCTION IF EXISTS {table}_append_only()")
