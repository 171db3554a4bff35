"""api_keys: the webhook secret before the last rotation, and until when it still signs

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch_op:
        batch_op.add_column(sa.Column("previous_webhook_secret", sa.String(length=120), nullable=True))
        batch_op.add_column(sa.Column("previous_secret_until", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch_op:
        batch_op.drop_column("previous_secret_until")
        batch_op.drop_column("previous_webhook_secret")
