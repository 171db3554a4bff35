"""`cmet conformance --kit DIR`: check our models against a conformance kit's goldens."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.console import Console

from cmet_core.settings import get_settings

EXPECTED = "about 3-5 minutes on a CPU"
"""What a person waits for the whole kit (every backbone, the connector, Audio2Lip, GFPGAN), said up front."""


def conformance(
    kit: Path = typer.Option(None, "--kit", help="Kit folder (default: setting CMET_CONFORMANCE_KIT)."),
) -> None:
    """Exit 0 when every golden group matches; one line per group with its max error, as each finishes
    (the whole kit takes about 3-5 minutes on a CPU)."""
    # deferred: torch
    from cmet_core.verify.conformance import kit_fingerprint, run_kit
    from cmet_core.verify.goldens import KitError

    kit = kit or get_settings().conformance_kit
    failed = done = 0
    start = time.monotonic()
    try:
        typer.echo(f"kit {kit} ({kit_fingerprint(kit)})" if kit.is_dir() else f"kit {kit}")
        typer.echo(f"{EXPECTED}: each model is built and filled, then its groups are checked; a line per group")
        with Console(stderr=True).status("building the first model…") as status:
            for result in run_kit(kit):
                done += 1
                failed += not result.passed
                typer.echo(f"{result.line()}  [{done} done, {time.monotonic() - start:.0f} s]")
                status.update(f"{done} groups done in {time.monotonic() - start:.0f} s ({EXPECTED} in all)…")
    except KitError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    total = f" in {time.monotonic() - start:.0f} s"
    typer.echo(f"all {done} groups match{total}" if not failed else f"{failed} of {done} group(s) failed{total}")
    raise typer.Exit(1 if failed else 0)
