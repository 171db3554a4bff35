"""`cmet conformance --kit DIR`: check our models against a conformance kit's goldens."""

from __future__ import annotations

from pathlib import Path

import typer

from cmet_core.settings import get_settings


def conformance(
    kit: Path = typer.Option(None, "--kit", help="Kit folder (default: setting CMET_CONFORMANCE_KIT)."),
) -> None:
    """Exit 0 when every golden group matches; one line per group with its max error."""
    from cmet_core.verify.conformance import kit_fingerprint, run_kit
    from cmet_core.verify.goldens import KitError

    kit = kit or get_settings().conformance_kit
    failed = 0
    try:
        typer.echo(f"kit {kit} ({kit_fingerprint(kit)})" if kit.is_dir() else f"kit {kit}")
        for result in run_kit(kit):
            typer.echo(result.line())
            failed += not result.passed
    except KitError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo("all groups match" if not failed else f"{failed} group(s) failed")
    raise typer.Exit(1 if failed else 0)
