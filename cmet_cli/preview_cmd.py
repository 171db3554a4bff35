"""`cmet preview`: a contact sheet, one frame under each emotion x intensity, before a long edit."""

from __future__ import annotations

from pathlib import Path

import typer

from cmet_cli import remote
from cmet_cli.choice_flags import ChoiceFlags, choice_flags, validated
from cmet_cli.console import EXIT_BAD_INPUT, fail, out, run, say
from cmet_cli.output_names import refuse_overwrite
from cmet_core.options import EditChoices, FaceChoice, SheetChoice
from cmet_core.settings import get_settings


def split_rows(text: str) -> list[str]:
    """`happy,sad` -> two rows; rows that are blends (`happy=0.6,surprised=0.4`) are separated by `;`."""
    separator = ";" if ";" in text else ","
    return [part.strip() for part in text.split(separator) if part.strip()]


def _numbers(text: str, flag: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise fail(f"{flag} takes numbers separated by commas, got {text!r}", EXIT_BAD_INPUT) from None


@choice_flags(FaceChoice)
def preview(
    input_path: Path = typer.Argument(..., metavar="INPUT", help="Talking-face video."),
    emotions: str = typer.Option(
        ..., "--emotions", help="Rows: emotions separated by commas (use ';' between blends such as happy=0.6,sad=0.4)."
    ),
    intensities: str = typer.Option("0.5,1,1.5", "--intensities", help="Columns: intensities separated by commas."),
    output: Path = typer.Option(
        None, "-o", "--output", help="The sheet's PNG (default: INPUT.sheet.png in the current folder)."
    ),
    force: bool = typer.Option(False, "--force", help="Replace the sheet's PNG if it exists."),
    frame: int = typer.Option(None, "--frame", help="Frame to show (default: the identity source frame)."),
    models: Path = typer.Option(None, "--models", help="A model set, or a folder of sets (default: the models dir)."),
    library: Path = typer.Option(None, "--library", help="An emotion library JSON (default: the built-in one)."),
    device: str = typer.Option(None, "--device", help="auto, cpu or cuda:N (default: setting CMET_DEVICE)."),
    server: str = typer.Option(
        None, "--server", help="Make the sheet on this cmet API (default: setting CMET_SERVER; key: CMET_API_KEY)."
    ),
    *,
    flags: ChoiceFlags,
) -> None:
    """Render one frame under each emotion x intensity: a labelled PNG grid, and each cell's frame beside it.
    The face choice and the restorer's options are flags made from `FaceChoice`."""
    # deferred: PIL, torch
    from cmet_core.edit.pipeline import Editor
    from cmet_core.edit.preview import contact_sheet

    choice = validated(
        SheetChoice, emotions=split_rows(emotions), intensities=_numbers(intensities, "--intensities"), frame=frame
    )
    options = flags.build(EditChoices)
    output = output if output is not None else Path(f"{input_path.stem}.sheet.png")
    refuse_overwrite(output, force)
    api = server or get_settings().server
    if api:
        remote.refuse_local_flags({"--models": models, "--library": library, "--device": device})
        body = choice.model_dump(exclude_none=True) | flags.build(FaceChoice).model_dump(exclude_defaults=True)
        with remote.connected(api) as client:
            remote.preview(client, input_path, output, body)
        return
    editor = run(Editor.from_settings, get_settings(), models=models, device=device, library=library)
    sheet = run(contact_sheet, editor, input_path, choice, options)
    run(sheet.save, output)
    cells = run(sheet.save_cells, output.with_name(f"{output.stem}_cells"))
    n = len(cells)
    stages = ", ".join(f"{stage} {seconds:.2f} s" for stage, seconds in sheet.stage_seconds.items())
    say(f"{stages}; {sheet.total_seconds / n:.2f} s per cell")
    out().print(
        f"wrote {output}: {len(choice.emotions)} x {len(choice.intensities)} cells of frame {sheet.frame} "
        f"(identity: frame {sheet.source_frame}); single images in {cells[0].parent}",
        highlight=False,
        soft_wrap=True,
    )
