"""`cmet emotions ...`: the emotion library."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, help="Built-in and custom emotions.")
