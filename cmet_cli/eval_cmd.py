"""`cmet eval LIST`: edit (or read) every labelled video, measure each output, print the table; with
`--compare`, a second model set or connector version over the same list, side by side."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

import typer
from rich.table import Table

from cmet_cli.console import out, run, say
from cmet_core.emotion.targets import EmotionTarget
from cmet_core.options import EditChoices
from cmet_core.quality.evaluation import (
    ACCURACY_NOTE,
    METRICS,
    EvalItem,
    EvalRow,
    EvalSummary,
    cell,
    load_items,
    markdown,
    row_of,
    summarize,
)
from cmet_core.settings import get_settings

CONNECTOR_SIDE = "connector:"


@dataclass(frozen=True)
class Side:
    """One column of the table: a model set and the connector it serves."""

    label: str
    models: Path | None
    connector: str | None
    reads_outputs: bool
    """The list's finished outputs stand for this side's edits (the first side only)."""


def _side(spec: str, models: Path | None, connector: str | None) -> Side:
    if spec.startswith(CONNECTOR_SIDE):
        version = spec.removeprefix(CONNECTOR_SIDE)
        return Side(f"connector {version}", models, version, reads_outputs=False)
    return Side(Path(spec).name or spec, Path(spec), connector, reads_outputs=False)


def _evaluate(
    side: Side, items: list[EvalItem], out_dir: Path, registry: str | None, device: str | None
) -> EvalSummary:
    from cmet_core.edit.pipeline import Editor  # deferred: torch
    from cmet_core.quality.assess import QualityConfig, assess, spans_of  # deferred: dlib, mediapipe

    settings = get_settings()
    config = QualityConfig(settings.quality_fps, settings.quality_identity_fps, settings.quality_emotion_model)
    editor = None
    rows: list[EvalRow] = []
    folder = out_dir / re.sub(r"[^A-Za-z0-9._-]+", "_", side.label)
    for n, item in enumerate(items):
        target = EmotionTarget(emotion=item.target, speech=item.speech) if item.target or item.speech else None
        if side.reads_outputs and item.output is not None:
            output, seconds, timeline, what = item.output, None, None, target
        else:
            if target is None:
                raise typer.BadParameter(f"row {n + 1} ({item.input.name}) has neither a target nor speech clips")
            if editor is None:
                editor = run(
                    Editor.from_settings,
                    settings,
                    models=side.models,
                    connector=side.connector,
                    registry=registry,
                    device=device,
                )
            output = folder / f"{n:03d}_{item.input.stem}.mp4"
            start = time.perf_counter()
            result = run(editor.edit, item.input, output, target, EditChoices(quality=False))
            seconds, timeline, what = time.perf_counter() - start, result.timeline, target
        spans = spans_of(what, timeline, float("inf"))
        report = run(assess, item.input, output, spans, config=config)
        rows.append(row_of(item, report, seconds))
        say(f"{side.label}: {n + 1}/{len(items)} {item.input.name}")
    return summarize(side.label, rows)


def _table(summaries: list[EvalSummary]) -> Table:
    table = Table(title="cmet eval", caption=ACCURACY_NOTE)
    table.add_column("metric")
    for s in summaries:
        table.add_column(s.side, justify="right")
    table.add_row("videos", *(str(s.videos) for s in summaries))
    for field, label in METRICS:
        table.add_row(label, *(cell(getattr(s, field)) for s in summaries))
    return table


def evaluate(
    items_path: Path = typer.Argument(
        ..., metavar="LIST", help="CSV or JSON: input, target, speech (';'-separated), expected, output (optional)."
    ),
    models: Path = typer.Option(None, "--models", help="A model set (default: the models dir's)."),
    connector: str = typer.Option(None, "--connector", help="Serve a registry connector: 'latest' or a version."),
    compare: str = typer.Option(
        None, "--compare", help="A second side over the same list: a model set folder, or connector:VERSION."
    ),
    registry: str = typer.Option(None, "--registry", help="Connector registry (default: CMET_REGISTRY)."),
    out_dir: Path = typer.Option(Path("eval-out"), "--out-dir", help="Where the edits are written."),
    json_out: Path = typer.Option(None, "--json", help="Write the summaries and rows as JSON here."),
    markdown_out: Path = typer.Option(None, "--markdown", help="Write the table as Markdown here."),
    device: str = typer.Option(None, "--device", help="auto, cpu or cuda:N (default: setting CMET_DEVICE)."),
) -> None:
    """Edit every labelled video (or read its finished output), measure it and print the comparison table."""
    items = run(load_items, items_path)
    first = Side(
        (models.name if models else "models") + (f" / connector {connector}" if connector else ""),
        models,
        connector,
        reads_outputs=True,
    )
    sides = [first] + ([_side(compare, models, connector)] if compare else [])
    summaries = [_evaluate(side, items, out_dir, registry, device) for side in sides]
    out().print(_table(summaries))
    if json_out is not None:
        json_out.write_text("[" + ",\n".join(s.model_dump_json(indent=2) for s in summaries) + "]\n")
        typer.echo(f"wrote {json_out}")
    if markdown_out is not None:
        markdown_out.write_text(markdown(summaries))
        typer.echo(f"wrote {markdown_out}")
