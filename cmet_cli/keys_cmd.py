"""`cmet keys ...`: API keys of the service (its database: CMET_DATABASE_URL, default SQLite in CMET_DATA_DIR)."""

from __future__ import annotations

import typer
from rich.markup import escape
from rich.table import Table

from cmet_cli.console import fail, out, run
from cmet_jobs.settings import get_jobs_settings

app = typer.Typer(no_args_is_help=True, help="API keys: create, list, revoke.")


def _db_url() -> str:
    from cmet_jobs.db.session import migrate  # deferred: sqlalchemy

    url = get_jobs_settings().db_url
    run(migrate, url)
    return url


@app.command("create")
def create_cmd(
    name: str = typer.Option(..., "--name", help="Who or what the key is for."),
    max_concurrent: int = typer.Option(4, "--max-concurrent", min=1, help="Jobs queued or running at once."),
    per_minute: int = typer.Option(60, "--per-minute", min=1, help="Submissions per minute."),
) -> None:
    """Create a key; its secret is printed once and only its hash is stored."""
    # deferred: sqlalchemy
    from cmet_jobs.db.session import session_scope
    from cmet_jobs.keys import create_key

    with session_scope(_db_url()) as session:
        new = create_key(session, name, max_concurrent, per_minute)
        typer.echo(f"id:             {new.record.id}")
        typer.echo(f"key:            {new.secret}")
        typer.echo(f"webhook secret: {new.record.webhook_secret}")
    typer.echo("store the key now: it cannot be shown again", err=True)


@app.command("list")
def list_cmd() -> None:
    """Keys with their prefix, limits and state (never the secret)."""
    # deferred: sqlalchemy
    from cmet_jobs.db.session import session_scope
    from cmet_jobs.keys import list_keys

    table = Table()
    for column in ("id", "name", "prefix", "concurrent", "per minute", "created", "state"):
        table.add_column(column)
    with session_scope(_db_url()) as session:
        for k in list_keys(session):
            state = f"revoked {k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "active"
            cells = (
                k.id,
                k.name,
                k.prefix + "...",
                k.max_concurrent_jobs,
                k.max_submissions_per_minute,
                f"{k.created_at:%Y-%m-%d %H:%M}",
                state,
            )
            table.add_row(*(escape(str(c)) for c in cells))
    out().print(table)


@app.command("revoke")
def revoke_cmd(key_id: str = typer.Argument(..., help="The key's id (from `cmet keys list`).")) -> None:
    """Revoke a key: requests with it get 401 from now on."""
    # deferred: sqlalchemy
    from cmet_jobs.db.session import session_scope
    from cmet_jobs.keys import revoke_key

    with session_scope(_db_url()) as session:
        if not revoke_key(session, key_id):
            raise fail(f"no active key {key_id}", 2)
    typer.echo(f"revoked {key_id}")
