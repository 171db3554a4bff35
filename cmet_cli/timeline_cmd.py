"""`cmet edit --timeline plan.json` and `--emotion from_audio`: the targets that change over the clip,
and the table of segments an edit found in the voice (so they can be edited and passed back)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table

from cmet_cli.console import EXIT_BAD_INPUT, fail
from cmet_core.emotion.timeline import ClipTimeline
from cmet_core.emotion.voice import FROM_AUDIO, FollowVoice
from cmet_core.errors import InputError

if TYPE_CHECKING:
    from cmet_core.edit.pipeline import EditResult
    from cmet_core.emotion.speech_plan import EditTarget


VOICE_SHORT_BY_S = 0.04
"""A track this much shorter than the video (one frame at 25 fps) is worth a warning; less is rounding."""


def over_time(
    timeline: Path | None,
    emotion: str | None,
    neutral: str | None,
    intensity: float,
    others: bool,
    validated: Callable[..., Any],
) -> EditTarget | None:
    """The timeline or follow-the-voice target these flags ask for, else None (a plain edit).
    `others`: whether --emotion's alternatives (--blend, --speech) were given too; `validated`
    builds a model and turns its validation errors into the CLI's message."""

    voice = emotion == FROM_AUDIO
    if neutral is not None and not voice:
        raise fail("--neutral goes with --emotion from_audio", EXIT_BAD_INPUT)
    if timeline is not None:
        if emotion is not None or others:
            raise fail(
                "give --timeline or an emotion (--emotion, --blend, --speech, --expression-from), not both",
                EXIT_BAD_INPUT,
            )
        if intensity != 1.0:
            raise fail("a timeline's segments carry their own intensity: no --intensity", EXIT_BAD_INPUT)
        try:
            plan: ClipTimeline = validated(ClipTimeline.load, path=timeline)
        except InputError as exc:
            raise fail(f"[{exc.code}] {exc}", EXIT_BAD_INPUT) from None
        return plan
    if voice:
        if others:
            raise fail(
                "--emotion from_audio follows the video's voice: no --blend, --speech or --expression-from",
                EXIT_BAD_INPUT,
            )
        follow: FollowVoice = validated(FollowVoice, intensity=intensity, neutral=neutral or "library")
        return follow
    return None


def output_label(target: EditTarget) -> str:
    """What the default output name says: the emotion's first name, `speech`, `timeline` or `from_audio`."""

    if isinstance(target, ClipTimeline):
        return "timeline"
    if isinstance(target, FollowVoice):
        return FROM_AUDIO
    return (target.emotion or "speech").split("=")[0].split(",")[0]


def short_voice_warning(video: Path, track: Path, max_seconds: float) -> str | None:
    """A `--voice-from` track shorter than the video leaves its end without a voice: say so before the edit."""
    from cmet_core.media.speech_track import check_track  # deferred: PyAV
    from cmet_core.media.video import probe

    video_s, track_s = probe(video).duration_s, check_track(track, max_seconds)
    if not 0 < track_s < video_s - VOICE_SHORT_BY_S:
        return None
    return (
        f"warning: the --voice-from track lasts {track_s:.2f} s, the video {video_s:.2f} s: after {track_s:.2f} s "
        "the face keeps its own emotion and the output is silent (the track is the output's audio)"
    )


def voice_table(result: EditResult) -> Table | None:
    """The segments found in the voice, as a `--timeline` plan would give them."""
    if not result.voice:
        return None
    table = Table(title="segments found in the voice")
    for column in ("start_s", "end_s", "target", "intensity", "cosine", "keyframes"):
        table.add_column(column, justify="left" if column == "target" else "right")
    for s in result.voice:
        cosine = "-" if s.cosine is None else f"{s.cosine:.3f}"
        table.add_row(
            f"{s.start_s:.3f}", f"{s.end_s:.3f}", s.target, f"{s.intensity:.3f}", cosine, str(len(s.keyframes))
        )
    return table


def timeline_json(result: EditResult) -> str | None:
    """The applied timeline as plan JSON (for from_audio: the voice's segments), ready for --timeline."""
    return result.timeline.model_dump_json(indent=1) if result.timeline is not None and result.voice else None
