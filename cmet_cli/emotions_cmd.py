"""`cmet emotions ...`: the emotion library."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from cmet_cli.console import fail
from cmet_core.settings import get_settings

if TYPE_CHECKING:
    from rich.console import JustifyMethod

    from cmet_core.emotion.library import EmotionLibrary

app = typer.Typer(no_args_is_help=True, help="Built-in and custom emotions.")


def _table(library: EmotionLibrary, title: str) -> Table:
    table = Table(title=title)
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("name", "left"),
        ("kind", "left"),
        ("set", "left"),
        ("N", "right"),
        ("norm", "right"),
    )
    for column, justify in columns:
        table.add_column(column, justify=justify)
    for entry in library.emotions:
        p = entry.provenance
        table.add_row(entry.name, entry.kind.value, p.source_set, str(p.n), f"{entry.norm:.3f}")
    return table


@app.command("list")
def list_emotions(
    library_file: Path = typer.Option(None, "--library", help="A library JSON file (default: the built-in one)."),
) -> None:
    """List emotions: name, kind (basic/extended/custom), source set, clips used (N) and vector norm."""
    from cmet_core.emotion.library import EmotionLibrary, builtin_library_path, load_builtin_library

    try:
        library = EmotionLibrary.load(library_file) if library_file else load_builtin_library()
    except ValueError as exc:
        raise fail(str(exc)) from None
    Console().print(_table(library, str(library_file or builtin_library_path())))


@app.command("build")
def build(
    e2v_root: Path = typer.Option(
        None, "--e2v-root", help="Folder with MEAD/ and gemini/ feature sets (default: CMET_TEST_DATA/e2v)."
    ),
    out: Path = typer.Option(..., "--out", help="Library JSON to write, e.g. cmet_core/data/emotions_builtin.json."),
    created_at: datetime = typer.Option(
        None, "--created-at", help="UTC timestamp to record (default: now), for reproducible files."
    ),
) -> None:
    """Regenerate the built-in library from emotion2vec+ feature folders."""
    from cmet_core.emotion.library import build_library

    root = e2v_root or get_settings().test_data / "e2v"
    stamp = created_at.replace(tzinfo=UTC) if created_at and created_at.tzinfo is None else created_at
    try:
        library = build_library(root, created_at=stamp)
        library.save(out)
    except (ValueError, OSError) as exc:
        raise fail(str(exc)) from None
    Console().print(_table(library, f"wrote {out}"))
