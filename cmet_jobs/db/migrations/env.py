"""Alembic environment: runs on the connection `session.migrate` hands over (same engine as the app)."""

from __future__ import annotations

from alembic import context

from cmet_jobs.db.models import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection, target_metadata=Base.metadata, render_as_batch=connection.dialect.name == "sqlite"
)
with context.begin_transaction():
    context.run_migrations()
