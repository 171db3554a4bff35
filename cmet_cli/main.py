"""The `cmet` command: one entry point, one sub-module per command group."""

from __future__ import annotations

import typer

from cmet_cli import (
    conformance_cmd,
    edit_cmd,
    emotions_cmd,
    eval_cmd,
    keys_cmd,
    models_cmd,
    preview_cmd,
    quality_cmd,
    serve_cmd,
    worker_cmd,
)
from cmet_core.logs import configure

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Emotion editing for talking-face videos.")
SERVICES = ("serve", "worker")  # they log at CMET_LOG_LEVEL; the one-shot commands only warn unless it is set


@app.callback()
def _configure_logging(ctx: typer.Context) -> None:
    configure(default_level=None if ctx.invoked_subcommand in SERVICES else "WARNING")


app.command("edit", cls=edit_cmd.ManyValuesCommand)(edit_cmd.edit)
app.command("preview")(preview_cmd.preview)
app.command("quality")(quality_cmd.quality)
app.command("eval")(eval_cmd.evaluate)
app.command("conformance")(conformance_cmd.conformance)
app.add_typer(models_cmd.app, name="models")
app.add_typer(emotions_cmd.app, name="emotions")
app.add_typer(keys_cmd.app, name="keys")
app.command("serve")(serve_cmd.serve)
app.command("worker")(worker_cmd.worker)


if __name__ == "__main__":
    app()
