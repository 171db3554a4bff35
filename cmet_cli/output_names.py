"""The file a command writes when no `-o` is given: in the current directory (the input's folder may be
read-only or shared), named after everything that tells two edits of one input apart, and never
over an existing file unless `--force` says so."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from cmet_cli.console import EXIT_BAD_INPUT, fail
from cmet_core.emotion.timeline import ClipTimeline
from cmet_core.emotion.voice import FROM_AUDIO, FollowVoice
from cmet_core.errors import ErrorCode

if TYPE_CHECKING:
    from cmet_core.emotion.speech_plan import EditTarget
    from cmet_core.options import FaceTarget

_UNSAFE = re.compile(r"[^\w.+@-]+")


def _safe(text: str) -> str:
    """A name part without separators, spaces or shell-awkward characters."""
    return _UNSAFE.sub("_", text).strip("_.") or "x"


def _intensity(value: float) -> str:
    return "" if value == 1.0 else f"-x{value:g}"


def _emotion_label(emotion: str, intensity: float) -> str:
    parts = [part.strip().replace("=", "") for part in emotion.split(",")]
    return _safe("-".join(parts)) + _intensity(intensity)


def target_label(target: EditTarget | tuple[FaceTarget, ...], timeline: Path | None = None) -> str:
    """`happy`, `happy-x1.2`, `happy0.6-surprised0.4`, `speech-angry_01+2`, `like-smile` (an expression
    reference), `timeline-plan`, `from_audio`; several faces: `faces-0happy-1sad-x0.5`, `faces-speakerhappy`."""
    if isinstance(target, tuple):
        return "faces-" + "-".join(
            _safe(face.label().replace("face ", "").replace(" ", "")) + _emotion_label(face.emotion, face.intensity)
            for face in target
        )
    if isinstance(target, ClipTimeline):
        return "timeline" + (f"-{_safe(timeline.stem)}" if timeline is not None else "")
    if isinstance(target, FollowVoice):
        return FROM_AUDIO + ("-self" if target.neutral == "self" else "") + _intensity(target.intensity)
    if target.emotion is not None:
        return _emotion_label(target.emotion, target.intensity)
    if target.expression_reference is not None:
        return f"like-{_safe(target.expression_reference.stem)}" + _intensity(target.intensity)
    first, more = target.speech[0], len(target.speech) - 1
    return f"speech-{_safe(first.stem)}" + (f"+{more}" if more else "") + _intensity(target.intensity)


def default_output(
    input_path: Path,
    target: EditTarget | tuple[FaceTarget, ...],
    *,
    timeline: Path | None = None,
    lips_from: Path | None = None,
    voice_from: Path | None = None,
    preview: bool = False,
) -> Path:
    """`INPUT.<target>[.dub-<track>|.voice-<track>][.preview].mp4` in the current directory."""
    parts = [_safe(input_path.stem), target_label(target, timeline)]
    if lips_from is not None:
        parts.append(f"dub-{_safe(lips_from.stem)}")
    if voice_from is not None:
        parts.append(f"voice-{_safe(voice_from.stem)}")
    if preview:
        parts.append("preview")  # a preview never takes the full edit's name
    return Path(".".join(parts) + ".mp4")


def refuse_overwrite(path: Path, force: bool) -> None:
    """Exit 2 with `[output_exists]` when `path` exists and `--force` was not given."""
    if path.exists() and not force:
        raise fail(
            f"[{ErrorCode.OUTPUT_EXISTS}] {path} exists; give --force to replace it, or -o for another name",
            EXIT_BAD_INPUT,
        )
