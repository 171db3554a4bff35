"""`cmet quality INPUT OUTPUT`: the quality report of any edit, ours or another tool's; and the table both
`cmet edit` and `cmet eval` print of it."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from cmet_cli.console import out, run, say
from cmet_core.quality.report import QualityProblem, QualityReport
from cmet_core.settings import get_settings


def report_table(report: QualityReport) -> Table:
    table = Table(title=f"quality ({report.sampled_frames} sampled frames, {report.seconds:.2f} s)")
    for column in ("measure", "verdict", "what it says"):
        table.add_column(column, overflow="fold")
    for name, measure in report.measures().items():
        table.add_row(name, measure.verdict, escape(measure.line))
    return table


def show(report: QualityReport | None, problem: QualityProblem | None) -> None:
    """The report's table, or the one line that says why there is none."""
    if report is not None:
        out().print(report_table(report))
    elif problem is not None:
        say(f"no quality report: [{problem.code}] {problem.message}")


def quality(
    input_path: Path = typer.Argument(..., metavar="INPUT", help="The video that was edited."),
    output_path: Path = typer.Argument(..., metavar="OUTPUT", help="The edited video (ours or another tool's)."),
    emotion: str = typer.Option(None, "--emotion", "-e", help="What the edit aimed at (a library emotion)."),
    speech: Path = typer.Option(
        None, "--speech-track", help="A dub's speech track: the lips are measured against its energy."
    ),
    json_out: Path = typer.Option(None, "--json", help="Write the report as JSON here ('-': standard output)."),
) -> None:
    """Measure an edit: identity kept, lips kept, steadiness, emotion reached, faces found (on sampled frames)."""
    from cmet_core.quality.assess import QualityConfig, assess, spans_of  # deferred: dlib, mediapipe

    settings = get_settings()
    config = QualityConfig(settings.quality_fps, settings.quality_identity_fps, settings.quality_emotion_model)
    spans = spans_of(emotion, None, float("inf")) if emotion is not None else []
    report = run(assess, input_path, output_path, spans, speech=speech, config=config)
    if json_out is not None and str(json_out) == "-":
        typer.echo(report.model_dump_json(indent=2))
        return
    out().print(report_table(report))
    if json_out is not None:
        json_out.write_text(report.model_dump_json(indent=2) + "\n")
        typer.echo(f"wrote {json_out}")
