"""`assess`: the quality report of any output against its input: an edit of ours or another tool's.

Both videos are read on the same sampled frames where they have the same frame count (an edit keeps the
input's), each at its own otherwise (a dub). The report is what `cmet quality` prints, what an edit
returns when `quality` is on (the pipeline calls this after writing the output) and what `cmet eval`
tabulates.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cmet_core.emotion.speech_plan import EditTarget
from cmet_core.emotion.targets import EmotionTarget
from cmet_core.emotion.timeline import ClipTimeline
from cmet_core.media.video import probe
from cmet_core.quality import measures
from cmet_core.quality.measures import Span
from cmet_core.quality.models import load
from cmet_core.quality.readings import Sampling, read_video, readers
from cmet_core.quality.report import CLASSIFIER_NOTE, QualityReport

DEFAULT_PER_SECOND = 5.0
DEFAULT_IDENTITY_PER_SECOND = 0.5


@dataclass(frozen=True)
class QualityConfig:
    """How the report samples and which classifier judges (the operator's: `CoreSettings.quality_*`)."""

    per_second: float = DEFAULT_PER_SECOND
    identity_per_second: float = DEFAULT_IDENTITY_PER_SECOND
    emotion_model: Path | None = None


def spans_of(target: EditTarget | str | None, timeline: ClipTimeline | None, duration_s: float) -> list[Span]:
    """What the edit aimed at, where: each timeline segment (a segment of speech clips has no class name), or
    the whole clip with the target's name (a blend or speech clips: distribution only)."""
    if timeline is not None:
        return [Span(s.start_s, s.end_s, s.target if isinstance(s.target, str) else None) for s in timeline.segments]
    name = target.emotion if isinstance(target, EmotionTarget) else target if isinstance(target, str) else None
    return [Span(0.0, duration_s, name)]


def assess(
    src: Path,
    out: Path,
    spans: Sequence[Span] = (),
    *,
    speech: Path | None = None,
    config: QualityConfig = QualityConfig(),
) -> QualityReport:
    """The report of `out` against `src`; `spans` (default: the whole clip, no target) say what the edit aimed
    at, `speech` is a dub's speech track (the lips are then measured against it). Raises
    `QualityUnavailable` without the `quality` extra."""
    start = time.perf_counter()
    per_second, identity_per_second, emotion_model = config.per_second, config.identity_per_second, config.emotion_model
    models = load(emotion_model)
    src_info, out_info = probe(src), probe(out)
    paired = src_info.frame_count == out_info.frame_count
    sampling = Sampling.of(out_info.frame_count, out_info.frame_rate, per_second, identity_per_second)
    src_sampling = (
        sampling if paired else Sampling.of(src_info.frame_count, src_info.frame_rate, per_second, identity_per_second)
    )
    detector, mesh = readers()
    inputs = read_video(src, src_sampling, models, detector, mesh)
    outputs = read_video(out, sampling, models, detector, mesh)
    end = out_info.duration_s
    spans = [Span(s.start_s, min(s.end_s, end), s.target) for s in spans] or [Span(0.0, end, None)]
    classifier = CLASSIFIER_NOTE if emotion_model is None else f"{emotion_model.name} (set by the operator)"
    return QualityReport(
        sampled_frames=len(outputs),
        sample_fps=per_second,
        identity=measures.identity(inputs, outputs, paired),
        lips=measures.lips(inputs, outputs, out_info.frame_rate, paired, speech),
        steadiness=measures.steadiness(inputs, outputs),
        emotion=measures.emotion(inputs, outputs, spans, classifier),
        faces=measures.faces(outputs),
        seconds=round(time.perf_counter() - start, 3),
    )
