"""jobs: what a job makes (edit, clip preview, contact sheet); existing jobs are edits

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch_op:
        batch_op.add_column(sa.Column("kind", sa.String(length=16), nullable=False, server_default="edit"))
        batch_op.create_index("ix_jobs_key_kind_created", ["key_id", "kind", "created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch_op:
        batch_op.drop_index("ix_jobs_key_kind_created")
        batch_op.drop_column("kind")
