"""`cmet models ...`: model sets (pull, make-tiny, make-filled, convert, list, verify).

Every failure is one message on stderr and exit code 1 (2 for bad usage), never a traceback.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from cmet_cli.console import EXIT_BAD_INPUT, fail, out, run, say
from cmet_core.backbones.registry import DEFAULT_BACKBONE, backbone_names
from cmet_core.modelsets.sets import NO_LICENCE, discover_sets, list_models, no_set_message
from cmet_core.quality.models import LICENCES
from cmet_core.settings import get_settings

app = typer.Typer(no_args_is_help=True, help="Model sets: pull, make-tiny, list, verify.")

_BACKBONE_HELP = f"The generator backbone of the set ({', '.join(backbone_names())})."
_DIR_HELP = "Models dir holding sets, or one set (default: setting CMET_MODELS_DIR, else ~/.cache/cmet/models)."


_SAME_AS_DIR = "Same as DIR (every `cmet models` command takes either form)."


def _root(directory: Path | None, dir_option: Path | None = None) -> Path:
    """DIR or `--dir` (both forms on every command, so none of them has to be remembered), else the models dir."""
    if directory is not None and dir_option is not None and directory != dir_option:
        raise fail(f"give DIR or --dir, not both ({directory} and {dir_option})", EXIT_BAD_INPUT)
    chosen = directory if directory is not None else dir_option
    return chosen if chosen is not None else get_settings().resolved_models_dir


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(size)


@app.command("pull")
def pull_cmd(
    directory: Path = typer.Argument(None, metavar="[DIR]", help=_DIR_HELP),
    dir_option: Path = typer.Option(None, "--dir", help=_SAME_AS_DIR),
    spec_file: Path = typer.Option(
        None, "--spec", help="A pull spec JSON (hub files and configs); default: the official one."
    ),
    endpoint: str = typer.Option(
        None, "--endpoint", help="Hub endpoint or mirror (default: CMET_HF_ENDPOINT, then HF_ENDPOINT)."
    ),
    mirror: str = typer.Option(
        None, "--mirror", help="Base URL serving GFPGANv1.4.pth instead of its GitHub release (same sha256)."
    ),
    no_restorer: bool = typer.Option(False, "--no-restorer", help="Leave out the optional face restorer."),
    force: bool = typer.Option(False, "--force", help="Replace an existing set of the same name."),
) -> None:
    """Download the published weights (needs network), verify and convert them into DIR/official."""
    from cmet_core.modelsets.pull import OFFICIAL_SPEC, load_spec, pull  # deferred: torch

    spec = run(load_spec, spec_file) if spec_file else OFFICIAL_SPEC
    if no_restorer:
        spec = spec.model_copy(update={"restorer": None})
    dest = run(pull, _root(directory, dir_option), spec, endpoint=endpoint, force=force, progress=say, mirror=mirror)
    typer.echo(f"model set {spec.name} {spec.version} written to {dest}")


@app.command("make-tiny")
def make_tiny_cmd(
    directory: Path = typer.Argument(None, metavar="[DIR]", help="Folder of the new set (default: MODELS_DIR/tiny)."),
    dir_option: Path = typer.Option(None, "--dir", help=_SAME_AS_DIR),
    seed: int = typer.Option(0, "--seed", help="Random seed of the weights."),
    force: bool = typer.Option(False, "--force", help="Replace an existing set there."),
    backbone: str = typer.Option(DEFAULT_BACKBONE, "--backbone", help=_BACKBONE_HELP),
) -> None:
    """Write a complete tiny random model set (tests, development; output is noise)."""
    from cmet_core.modelsets.build import make_tiny_set  # deferred: torch

    given = directory is not None or dir_option is not None
    dest = _root(directory, dir_option) if given else _root(None) / "tiny"
    dest = run(make_tiny_set, dest, seed, force=force, backbone=backbone)
    typer.echo(f"tiny model set (seed {seed}) written to {dest}")


@app.command("make-filled")
def make_filled_cmd(
    directory: Path = typer.Argument(..., help="Folder of the new set."),
    force: bool = typer.Option(False, "--force", help="Replace an existing set there."),
    backbone: str = typer.Option(DEFAULT_BACKBONE, "--backbone", help=_BACKBONE_HELP),
) -> None:
    """Write a full-size generator, connector, restorer and Audio2Lip filled by rule cmet-fill-v1 (benchmarks)."""
    from cmet_core.modelsets.build import make_filled_set  # deferred: torch

    dest = run(make_filled_set, directory, force=force, backbone=backbone)
    typer.echo(f"filled model set written to {dest}")


@app.command("convert")
def convert_cmd(
    directory: Path = typer.Argument(..., help="Folder of the new set."),
    generator: Path = typer.Option(
        ...,
        "--generator",
        "--edtalk",
        help="The backbone's published generator: EDTalk.pt for edtalk, the folder of its four .pth files for pdfgc.",
    ),
    connector: Path = typer.Option(
        None,
        "--connector",
        help="Official C-MET connector .pth (optional: without one the set edits nothing until cmet-train trains one).",
    ),
    emotion2vec: Path = typer.Option(..., "--emotion2vec", help="emotion2vec+ folder with config.yaml and model.pt."),
    gfpgan: Path = typer.Option(None, "--gfpgan", help="Optional GFPGANv1.4.pth, the face restorer of --enhance."),
    audio2lip: Path = typer.Option(None, "--audio2lip", help="Official Audio2Lip.pt (optional; needed to dub)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing set there."),
    backbone: str = typer.Option(DEFAULT_BACKBONE, "--backbone", help=_BACKBONE_HELP),
) -> None:
    """Build a set from official files already on disk (published configs)."""
    from cmet_core.modelsets.build import convert_set  # deferred: torch

    dest = run(
        convert_set,
        directory,
        generator,
        connector,
        emotion2vec,
        force=force,
        gfpgan_pth=gfpgan,
        audio2lip_pt=audio2lip,
        backbone=backbone,
    )
    typer.echo(f"model set written to {dest}")


@app.command("list")
def list_cmd(
    directory: Path = typer.Argument(None, metavar="[DIR]", help=_DIR_HELP),
    dir_option: Path = typer.Option(None, "--dir", help=_SAME_AS_DIR),
) -> None:
    """Sets and their models: name, version, kind, size, source, and what is known of the weights' licence."""

    root = _root(directory, dir_option)
    if not discover_sets(root):
        raise fail(no_set_message(root))
    rows, problems = run(list_models, root)
    table = Table(title=f"model sets in {root}")
    for column in ("set", "kind", "name", "version", "size", "source", "sha256", "licence"):
        table.add_column(column, justify="right" if column == "size" else "left", overflow="fold")
    for r in rows:
        cells = (
            f"{r.set_name} {r.set_version}",
            r.kind,
            r.name,
            r.version,
            _size(r.size),
            r.source,
            r.sha256[:12],
            "see below" if r.licence != NO_LICENCE else r.licence,
        )
        table.add_row(*(escape(c) for c in cells))
    out().print(table)
    for name, licence in sorted({(r.name, r.licence) for r in rows if r.licence != NO_LICENCE}):
        typer.echo(f"licence of {name}: {licence}")
    for name, licence in LICENCES.items():  # the quality report's, from the `quality` extra, beside the sets
        typer.echo(f"licence of quality model {name}: {licence}")
    for problem in problems:
        say(f"error: {problem}")
    raise typer.Exit(1 if problems else 0)


@app.command("verify")
def verify_cmd(
    directory: Path = typer.Argument(None, metavar="[DIR]", help=_DIR_HELP),
    dir_option: Path = typer.Option(None, "--dir", help=_SAME_AS_DIR),
    no_load: bool = typer.Option(False, "--no-load", help="Only re-hash; skip the strict loads."),
) -> None:
    """Re-hash every file and strictly load every model; exit 0 when all sets verify, else 1."""
    from cmet_core.modelsets.build import verify_set  # deferred: torch

    root = _root(directory, dir_option)
    sets = discover_sets(root)
    if not sets:
        raise fail(no_set_message(root))
    failed = 0
    for set_dir in sets:
        report = run(verify_set, set_dir, load=not no_load)
        title = f"{set_dir}" + (f" ({report.manifest.name} {report.manifest.version})" if report.manifest else "")
        table = Table(title=title)
        for column in ("kind", "name", "status", "detail"):
            table.add_column(column, overflow="fold")
        for check in report.checks:
            status = "[green]ok[/green]" if check.status == "ok" else "[red]FAILED[/red]"
            table.add_row(escape(check.kind), escape(check.name), status, escape(check.detail))
        out().print(table)
        failed += not report.ok
    typer.echo(f"{len(sets) - failed} of {len(sets)} model set(s) verified" + (f"; {failed} failed" if failed else ""))
    raise typer.Exit(1 if failed else 0)
