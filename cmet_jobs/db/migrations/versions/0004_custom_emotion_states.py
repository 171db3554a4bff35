"""custom emotions: built by a worker (state, clips, library entry) instead of a raw vector

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("emotions") as batch_op:
        batch_op.drop_column("vector")
        batch_op.drop_column("clips")
        batch_op.add_column(sa.Column("state", sa.String(length=16), nullable=False, server_default="pending"))
        batch_op.add_column(sa.Column("clips", sa.JSON(), nullable=False, server_default="{}"))
        batch_op.add_column(sa.Column("entry", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("error_code", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("error_message", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("emotions") as batch_op:
        for column in ("error_message", "error_code", "entry", "clips", "state"):
            batch_op.drop_column(column)
        batch_op.add_column(sa.Column("vector", sa.LargeBinary(), nullable=False))
        batch_op.add_column(sa.Column("clips", sa.Integer(), nullable=False))
