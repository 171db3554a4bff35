"""Job records in SQL (SQLAlchemy 2, Alembic migrations): SQLite embedded, PostgreSQL in compose."""
