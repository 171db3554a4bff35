"""`cmet models ...`: model sets (pull, make-tiny, list, verify)."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, help="Model sets: pull, make-tiny, list, verify.")
