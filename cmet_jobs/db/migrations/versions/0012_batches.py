"""batches: edits submitted together, their jobs' `batch_id`, and deliveries of a batch's webhook

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("key_id", sa.String(length=40), nullable=False),
        sa.Column("edit_ids", sa.JSON(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("request_hash", sa.String(length=64), nullable=True),
        sa.Column("webhook_url", sa.Text(), nullable=True),
        sa.Column("webhook_events", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["key_id"], ["api_keys.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key_id", "idempotency_key", name="uq_batches_key_idempotency"),
    )
    op.create_index("ix_batches_key_id", "batches", ["key_id"], unique=False)
    with op.batch_alter_table("jobs") as batch_op:
        batch_op.add_column(sa.Column("batch_id", sa.String(length=40), nullable=True))
        batch_op.create_index("ix_jobs_batch_id", ["batch_id"], unique=False)
        batch_op.create_foreign_key("fk_jobs_batch_id", "batches", ["batch_id"], ["id"], ondelete="SET NULL")
    with op.batch_alter_table("webhook_deliveries") as batch_op:
        batch_op.alter_column("job_id", existing_type=sa.String(length=40), nullable=True)
        batch_op.add_column(sa.Column("batch_id", sa.String(length=40), nullable=True))
        batch_op.create_index("ix_webhook_deliveries_batch_id", ["batch_id"], unique=False)
        batch_op.create_foreign_key(
            "fk_webhook_deliveries_batch_id", "batches", ["batch_id"], ["id"], ondelete="CASCADE"
        )


def downgrade() -> None:
    with op.batch_alter_table("webhook_deliveries") as batch_op:
        batch_op.drop_constraint("fk_webhook_deliveries_batch_id", type_="foreignkey")
        batch_op.drop_index("ix_webhook_deliveries_batch_id")
        batch_op.drop_column("batch_id")
    op.execute("DELETE FROM webhook_deliveries WHERE job_id IS NULL")
    with op.batch_alter_table("webhook_deliveries") as batch_op:
        batch_op.alter_column("job_id", existing_type=sa.String(length=40), nullable=False)
    with op.batch_alter_table("jobs") as batch_op:
        batch_op.drop_constraint("fk_jobs_batch_id", type_="foreignkey")
        batch_op.drop_index("ix_jobs_batch_id")
        batch_op.drop_column("batch_id")
    op.drop_index("ix_batches_key_id", table_name="batches")
    op.drop_table("batches")
