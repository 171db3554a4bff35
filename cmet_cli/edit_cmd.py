"""`cmet edit`: the product's main job on one machine, no server needed.

`--speech` and `--neutral-speech` take several files after one flag (`--speech a.wav b.wav`),
which click cannot express; `ManyValuesCommand` rewrites that form into repeated flags first.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table
from typer.core import TyperCommand

from cmet_cli import remote
from cmet_cli.choice_flags import ChoiceFlags, choice_flags, validated
from cmet_cli.console import EXIT_BAD_INPUT, fail, out, run, say, stage_bars
from cmet_cli.face_flags import faces_of
from cmet_cli.output_names import default_output, refuse_overwrite
from cmet_cli.quality_cmd import show
from cmet_cli.timeline_cmd import over_time, short_voice_warning, timeline_json, voice_table
from cmet_core.emotion.targets import EmotionTarget
from cmet_core.media.sample import write_sample_clip
from cmet_core.options import EditChoices, Limits
from cmet_core.settings import get_settings

if TYPE_CHECKING:
    from typer._click import Context  # typer vendors click; its commands take this Context

    from cmet_core.edit.pipeline import EditResult
    from cmet_core.stages import Stage

_MANY = ("--speech", "--neutral-speech")


def spread_values(args: list[str], flags: tuple[str, ...] = _MANY) -> list[str]:
    """`--speech a.wav b.wav` -> `--speech a.wav --speech b.wav`; values end at the next `-` token."""
    rewritten: list[str] = []
    current: str | None = None  # the many-valued flag whose values are being read
    first_value = False
    for arg in args:
        if arg in flags:
            current, first_value = arg, True
        elif arg.startswith("-"):
            current = None
        elif current is not None:
            if not first_value:
                rewritten.append(current)
            first_value = False
        rewritten.append(arg)
    return rewritten


class ManyValuesCommand(TyperCommand):
    """Lets `--speech a.wav b.wav` mean `--speech a.wav --speech b.wav` (INPUT goes before such flags)."""

    def parse_args(self, ctx: Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, spread_values(args))


def _summary(result: EditResult, stages: tuple[Stage, ...]) -> Table:
    table = Table()
    table.add_column("stage")
    table.add_column("seconds", justify="right")
    table.add_column("frames/s", justify="right")
    for stage in stages:
        seconds = result.stage_seconds.get(stage, 0.0)
        table.add_row(stage, f"{seconds:.2f}", f"{result.frames / seconds:.1f}" if seconds > 0 else "-")
    table.add_row("total", f"{result.total_seconds:.2f}", f"{result.frames / max(result.total_seconds, 1e-9):.1f}")
    return table


def _facts(result: EditResult) -> str:
    face = "input was a face crop (no paste-back)" if result.face_crop_input else "face cropped and pasted back"
    share = 100 * result.network_seconds / max(result.total_seconds, 1e-9)
    return f"identity source: frame {result.source_frame}; {face}; networks {share:.0f}% of the time"


SET_BY = {"lips": "lips_from", "faces": "face"}
"""The `EditChoices` fields that other flags set, not one of their own: `--lips-from` dubs, `--face` (or
`--faces-plan PLAN`) gives several faces their own targets."""


def edit_choices(
    flags: ChoiceFlags, lips_from: Path | None, faces: list[dict[str, object]] | None = None
) -> EditChoices:
    """The edit's choices: its generated flags, the lips that `--lips-from` chooses and the faces `--face` gives."""
    return flags.build(EditChoices, lips="speech" if lips_from is not None else "video", faces=faces or ())


@choice_flags(EditChoices, set_by=SET_BY)
def edit(
    input_path: Path = typer.Argument(
        None, metavar="INPUT", help="Talking-face video, or a photo with --lips-from; default: a generated sample clip."
    ),
    output: Path = typer.Option(
        None,
        "-o",
        "--output",
        help="Output mp4 (default: INPUT.<emotion, blend, clips or timeline>[.dub-TRACK].mp4 in the current folder).",
    ),
    force: bool = typer.Option(False, "--force", help="Replace the output file if it exists."),
    emotion: str = typer.Option(
        None,
        "--emotion",
        "-e",
        help="A library emotion, e.g. happy, sarcastic; or from_audio: the face follows the voice "
        "(the video's own, or --voice-from's).",
    ),
    blend: str = typer.Option(None, "--blend", help="A weighted mix, e.g. happy=0.6,surprised=0.4."),
    speech: list[Path] = typer.Option(
        None, "--speech", help="Speech clips whose emotion to take (several after one flag)."
    ),
    neutral_speech: list[Path] = typer.Option(None, "--neutral-speech", help="Neutral clips of the same speaker."),
    expression_from: Path = typer.Option(
        None,
        "--expression-from",
        help="A photo or short clip of a face making the wanted expression: each frame moves toward it "
        "(the backbone's own expression code; no connector needed).",
    ),
    intensity: float = typer.Option(1.0, "--intensity", help="0 keeps the input's emotion, 1 as recorded, up to 2."),
    timeline: Path = typer.Option(
        None, "--timeline", help="A plan JSON: segments {start_s, end_s, target, intensity}, as the API takes."
    ),
    neutral: str = typer.Option(
        None, "--neutral", help="With --emotion from_audio: 'library' (default) or 'self' (the calmest window)."
    ),
    plan_out: Path = typer.Option(None, "--plan-out", help="With --emotion from_audio: write the found timeline here."),
    models: Path = typer.Option(None, "--models", help="A model set, or a folder of sets (default: the models dir)."),
    library: Path = typer.Option(None, "--library", help="An emotion library JSON (default: the built-in one)."),
    lips_from: Path = typer.Option(
        None, "--lips-from", help="Dub: the lips speak this speech track, which becomes the output's audio."
    ),
    voice_from: Path = typer.Option(
        None,
        "--voice-from",
        help="With --emotion from_audio: follow this speech track's voice (aligned to the video; the output's audio).",
    ),
    pose_from: Path = typer.Option(None, "--pose-from", help="With a photo: a video whose head motion it takes."),
    eyes_from: Path = typer.Option(
        None, "--eyes-from", help="With --gaze clip or --blink clip: a video whose eye motion the output takes (pdfgc)."
    ),
    face: list[str] = typer.Option(
        None,
        "--face",
        help="Several faces, each its own target: INDEX:TARGET[@INTENSITY], repeated (INDEX from the left, "
        "speaker, or x0,y0,x1,y1), e.g. --face 0:happy --face 1:sad@0.5; instead of --emotion.",
    ),
    faces_plan: Path = typer.Option(
        None,
        "--faces-plan",
        help="Several faces from a plan JSON: [{select, emotion | speech | "
        "expression_reference | timeline, intensity}],"
        " paths from the plan's folder.",
    ),
    max_duration: float = typer.Option(
        600.0, "--max-duration", help="Refuse longer inputs and speech tracks (seconds)."
    ),
    device: str = typer.Option(None, "--device", help="auto, cpu or cuda:N (default: setting CMET_DEVICE)."),
    connector: str = typer.Option(
        None,
        "--connector",
        help="Serve a registry connector: 'latest' or a version (default: CMET_CONNECTOR_VERSION, else the set's own).",
    ),
    registry: str = typer.Option(
        None, "--registry", help="Connector registry: a directory or s3://bucket/prefix (default: CMET_REGISTRY)."
    ),
    server: str = typer.Option(
        None,
        "--server",
        help="Run the edit on this cmet API (default: setting CMET_SERVER; key: CMET_API_KEY) and download it.",
    ),
    *,
    flags: ChoiceFlags,
) -> None:
    """Give a talking-face video another facial emotion: same words, lips and head motion.

    With --lips-from it dubs instead: the lips speak that speech track (the output lasts as long),
    and a photo INPUT is animated, its head moved by --pose-from or held still. The edit's choices
    (face, restorer, lips, clip window) are flags made from `EditChoices`."""
    from cmet_core.edit.pipeline import STAGES, Editor  # deferred: PIL, torch

    if emotion is not None and blend is not None:
        raise fail("give --emotion or --blend, not both", EXIT_BAD_INPUT)
    if voice_from is not None and lips_from is not None:
        raise fail("give --lips-from (a dub follows its own voice) or --voice-from, not both", EXIT_BAD_INPUT)
    faces = faces_of(face, faces_plan)
    if faces and (emotion is not None or blend is not None or speech or timeline is not None or expression_from):
        raise fail(
            "with --face or --faces-plan each face has its own target: no --emotion, --blend, --speech, --timeline "
            "or --expression-from",
            EXIT_BAD_INPUT,
        )
    api = server or get_settings().server
    if api:
        local = {"--models": models, "--library": library, "--device": device, "--connector": connector}
        local |= {"--registry": registry, "--neutral-speech": neutral_speech, "--plan-out": plan_out}
        remote.refuse_local_flags(local)
        body = {"emotion": emotion if emotion is not None else blend, "intensity": intensity}
        body |= {"timeline": remote.timeline_body(timeline)} if timeline is not None else {}
        body |= {"neutral": neutral} if neutral is not None else {}
        body |= edit_choices(flags, lips_from, faces).model_dump(mode="json", exclude_defaults=True)
        files = {"speech": list(speech or ()), "speech_track": lips_from or voice_from, "pose_video": pose_from}
        files |= {"expression_reference": expression_from}
        files |= {"eye_video": eyes_from}
        with tempfile.TemporaryDirectory(prefix="cmet-sample-") as scratch:
            video = input_path or write_sample_clip(Path(scratch) / "sample.mp4")
            named = body["emotion"] or ("like" if expression_from is not None else "speech")
            label = "timeline" if timeline is not None else "faces" if faces else named.split("=")[0].split(",")[0]
            kind = ".preview" if body.get("preview_s") is not None else ""  # as default_output names it here
            output = output or Path(f"{video.stem}.{label}{kind}.mp4")
            refuse_overwrite(output, force)
            with remote.connected(api) as client:
                remote.edit(client, video, output, files, {k: v for k, v in body.items() if v is not None})
        return
    others = bool(blend is not None or speech or neutral_speech or expression_from is not None)
    target = None if faces else over_time(timeline, emotion, neutral, intensity, others, validated)
    if target is None and not faces:
        target = validated(
            EmotionTarget,
            emotion=emotion if emotion is not None else blend,
            speech=tuple(speech or ()),
            neutral_speech=tuple(neutral_speech or ()),
            expression_reference=expression_from,
            intensity=intensity,
        )
    options = edit_choices(flags, lips_from, faces)
    settings = get_settings()
    limits = validated(
        Limits,
        max_duration_s=max_duration,
        max_timeline_segments=settings.max_timeline_segments,
        max_faces=settings.max_faces,
        encoder=settings.video_encoder,
        preset=settings.x264_preset,
    )
    with tempfile.TemporaryDirectory(prefix="cmet-sample-") as scratch:
        if input_path is None:
            input_path = write_sample_clip(Path(scratch) / "sample.mp4")
            say("no INPUT given: editing a generated 2 s sample face clip")
            output = output if output is not None else Path("sample.edited.mp4")
        if output is None:
            output = default_output(
                input_path,
                target if target is not None else options.faces,
                timeline=timeline,
                lips_from=lips_from,
                voice_from=voice_from,
                preview=options.preview_s is not None,
            )
        refuse_overwrite(output, force)
        if voice_from is not None and (warning := run(short_voice_warning, input_path, voice_from, max_duration)):
            say(warning)
        editor = run(
            Editor.from_settings,
            get_settings(),
            models=models,
            device=device,
            library=library,
            connector=connector,
            registry=registry,
        )
        choice = editor.models.connector_choice
        say(
            f"models: {editor.models.path}; connector {editor.connector_label}"
            + (f" from {choice.registry.where}" if choice else "")
        )
        with stage_bars() as bars:
            shown = (*STAGES, "lips") if lips_from is not None else STAGES
            tasks = {stage: bars.add_task(stage, total=None) for stage in shown}

            def progress(stage: str, done: int, total: int) -> None:
                if stage in tasks:
                    bars.update(tasks[stage], completed=done, total=max(total, done))

            result = run(
                editor.edit,
                input_path,
                output,
                target,
                options,
                progress,
                speech_track=lips_from or voice_from,
                pose_video=pose_from,
                eye_video=eyes_from,
                limits=limits,
            )
    out().print(_summary(result, tuple(dict.fromkeys((*STAGES, *result.stage_seconds)))))
    show(result.quality, result.quality_problem)
    found = voice_table(result)
    if found is not None:
        out().print(found)
        if plan_out is not None and (plan := timeline_json(result)) is not None:
            plan_out.write_text(plan + "\n")
            typer.echo(f"wrote the found timeline to {plan_out} (edit it, then pass it back with --timeline)")
    if result.speakers:
        turns = ", ".join(f"face {t.face} {t.start_s:.2f}-{t.end_s:.2f} s" for t in result.speakers)
        typer.echo(f"speaker: {turns}")
    typer.echo(_facts(result))
    typer.echo(
        f"wrote {result.output}: {result.frames} frames, {result.fps:g} fps, {result.duration_s:.2f} s, "
        f"{result.width}x{result.height}"
    )
