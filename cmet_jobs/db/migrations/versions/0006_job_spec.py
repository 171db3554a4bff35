"""jobs: one EditSpec (inputs, target, options) replaces request + inputs; `creating` is a state

Revision ID: 0006
Revises: 0005
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_OPTIONS = ("emotion", "intensity", "face_index", "face_box", "source_frame")
_jobs = sa.table(
    "jobs",
    sa.column("id", sa.String),
    sa.column("request", sa.JSON),
    sa.column("inputs", sa.JSON),
    sa.column("spec", sa.JSON),
)


def _spec(request: dict[str, Any], inputs: dict[str, Any]) -> dict[str, Any]:
    spec = {name: request[name] for name in _OPTIONS if request.get(name) is not None}
    spec.setdefault("intensity", 1.0)
    return {**spec, "video": inputs.get("video") or {"url": "missing:"}, "speech": list(inputs.get("speech", []))}


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch_op:
        batch_op.add_column(sa.Column("spec", sa.JSON(), nullable=True))
    bind = op.get_bind()
    for row in bind.execute(sa.select(_jobs.c.id, _jobs.c.request, _jobs.c.inputs)).all():
        bind.execute(_jobs.update().where(_jobs.c.id == row.id).values(spec=_spec(row.request or {}, row.inputs or {})))
    op.execute("UPDATE jobs SET state = 'creating', stage = NULL WHERE stage = 'creating'")
    with op.batch_alter_table("jobs") as batch_op:
        batch_op.drop_column("request")
        batch_op.drop_column("inputs")
        batch_op.alter_column("spec", existing_type=sa.JSON(), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch_op:
        batch_op.add_column(sa.Column("request", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("inputs", sa.JSON(), nullable=True))
    bind = op.get_bind()
    for row in bind.execute(sa.select(_jobs.c.id, _jobs.c.spec)).all():
        spec = dict(row.spec)
        inputs = {"video": spec.pop("video"), "speech": spec.pop("speech", [])}
        bind.execute(_jobs.update().where(_jobs.c.id == row.id).values(request=spec, inputs=inputs))
    op.execute("UPDATE jobs SET state = 'queued', stage = 'creating' WHERE state = 'creating'")
    with op.batch_alter_table("jobs") as batch_op:
        batch_op.drop_column("spec")
        batch_op.alter_column("request", existing_type=sa.JSON(), nullable=False)
        batch_op.alter_column("inputs", existing_type=sa.JSON(), nullable=False)
