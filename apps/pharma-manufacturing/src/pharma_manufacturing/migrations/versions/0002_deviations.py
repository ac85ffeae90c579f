"""0002 expand: the deviations table, and the equipment a step ran on (nullable).

Expand only: the version before (schema 0001) never reads the new table, and its INSERT into
steps leaves `equipment_id` out, which a nullable column accepts. So it keeps working during a
canary and after a rollback. Nothing is dropped or renamed here; that is a later release's
contract step, once no running version uses the old shape.
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deviations",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("batch_id", sa.String(32), sa.ForeignKey("batches.batch_id"), nullable=False),
        sa.Column("step_sequence", sa.Integer(), nullable=True),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("opened_by", sa.String(64), nullable=False),
        sa.Column("opened_at", sa.DateTime(), nullable=False),
        sa.Column("closed_by", sa.String(64), nullable=True),
        sa.Column("closed_at", sa.DateTime(), nullable=True),
        sa.Column("resolution", sa.Text(), nullable=True),
    )
    op.create_index("ix_deviations_batch", "deviations", ["batch_id"])
    op.add_column("steps", sa.Column("equipment_id", sa.String(64), nullable=True))


def downgrade() -> None:
    # For an operator who chooses to; the app never downgrades (see storage/schema.py).
    with op.batch_alter_table("steps") as batch:
        batch.drop_column("equipment_id")
    op.drop_index("ix_deviations_batch", table_name="deviations")
    op.drop_table("deviations")
