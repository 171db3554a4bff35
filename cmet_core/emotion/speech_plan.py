"""What the connector reads during one edit: one vector, or a timeline resolved into a schedule; and
what frames move toward directly in the backbone's space (an expression reference's code).

An edit's target is one emotion (`EmotionTarget`), a timeline of them (`ClipTimeline`) or the
emotion of the voice (`FollowVoice`, or `emotion: "from_audio"`), which becomes a timeline too.
Every segment's target resolves through `semantic_vector`, as a whole-clip edit's does, or, for an
expression reference, through the backbone's expression encoder (`Express`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from cmet_core.emotion.library import EmotionLibrary, UnknownEmotionError, resolve
from cmet_core.emotion.targets import Embed, EmotionTarget, semantic_vector
from cmet_core.emotion.timeline import (
    Aim,
    ClipTimeline,
    Expression,
    ReferenceFile,
    Segment,
    SpeechClips,
    TimelineSchedule,
)
from cmet_core.emotion.voice import FROM_AUDIO, FollowVoice, VoiceSegment, embedding_of, follow_voice, voice_timeline
from cmet_core.errors import ErrorCode, InputError

EditTarget = EmotionTarget | ClipTimeline | FollowVoice

Express = Callable[[Path], np.ndarray]
"""express(reference): the mean expression code (the backbone's width) of a reference photo or clip's face."""


def needs_connector(target: EditTarget) -> bool:
    """Whether the edit runs the connector: every target but an expression reference (or a timeline of them
    only) does; those move frames in the backbone's own space (decision 0040)."""
    if isinstance(target, ClipTimeline):
        return target.speaks()
    if isinstance(target, EmotionTarget):
        return target.expression_reference is None
    return True


@dataclass
class SpeechPlan:
    """The condition (a vector, or a schedule for a timeline), the timeline applied and the voice's segments;
    or, for an expression reference, its code (`reference`, moved toward by `intensity`)."""

    vector: np.ndarray | None = None
    schedule: TimelineSchedule | None = None
    timeline: ClipTimeline | None = None
    voice: list[VoiceSegment] = field(default_factory=list)
    reference: Expression | None = None
    intensity: float = 1.0

    @property
    def speaks(self) -> bool:
        """Whether the connector has something to read (a vector, or a schedule with speech segments)."""
        return self.vector is not None or (self.schedule is not None and self.schedule.speaks)

    def condition(self, device: torch.device) -> torch.Tensor | TimelineSchedule:
        if self.schedule is not None:
            return self.schedule
        assert self.vector is not None
        return torch.from_numpy(self.vector).to(device).reshape(1, 1, -1)

    def pulls(self, times_s: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """(len(times), K) weights and (K, width) codes that frames move toward (`TimelineSchedule.pulls`);
        times are seconds from the first frame. None when nothing is an expression reference."""
        if self.reference is not None:
            return np.full((len(times_s), 1), self.intensity), self.reference.code[None, :]
        return self.schedule.pulls(times_s) if self.schedule is not None else None


def _no_express(reference: Path) -> np.ndarray:
    raise ValueError(f"no backbone to read the expression of {reference}")


def unit_vector(
    segment: Segment[SpeechClips | ReferenceFile], library: EmotionLibrary, embed: Embed, express: Express = _no_express
) -> Aim:
    """A segment's aim at intensity 1 (its intensity curve scales it), its peak checked like an edit's: a
    speech vector, or an expression reference's code."""
    target = segment.target
    if isinstance(target, ReferenceFile):
        return Expression(express(target.expression_reference))
    if isinstance(target, str):
        if target == FROM_AUDIO:
            raise InputError(ErrorCode.BAD_EMOTION, "from_audio makes a timeline; it cannot be a segment's target")
        try:
            resolve(target, library, segment.peak_intensity)
        except UnknownEmotionError as exc:
            raise InputError(ErrorCode.UNKNOWN_EMOTION, str(exc)) from None
        except ValueError as exc:
            raise InputError(ErrorCode.BAD_EMOTION, str(exc)) from None
        return semantic_vector(EmotionTarget(emotion=target), library, embed)
    clips = EmotionTarget(speech=target.speech, neutral_speech=target.neutral_speech)
    return semantic_vector(clips, library, embed)


def schedule_of(
    timeline: ClipTimeline, library: EmotionLibrary, embed: Embed, express: Express = _no_express
) -> TimelineSchedule:
    aims = [(s, unit_vector(s, library, embed, express)) for s in timeline.segments]
    return TimelineSchedule(aims, timeline.transition_s)


def plan_speech(
    target: EditTarget,
    library: EmotionLibrary,
    embed: Embed,
    audio: Path,
    duration_s: float,
    max_segments: int,
    *,
    has_audio: bool = True,
    express: Express = _no_express,
) -> SpeechPlan:
    """`audio` is the file whose voice `from_audio` follows (the video, or a dub's speech track), and
    `duration_s` the output's length, which a timeline must fit; `express` reads expression references."""
    if isinstance(target, EmotionTarget) and target.emotion == FROM_AUDIO:
        target = FollowVoice(intensity=target.intensity)
    if isinstance(target, EmotionTarget) and target.expression_reference is not None:
        return SpeechPlan(reference=Expression(express(target.expression_reference)), intensity=target.intensity)
    if isinstance(target, EmotionTarget):
        return SpeechPlan(vector=semantic_vector(target, library, embed))
    if isinstance(target, FollowVoice):
        if target.audio is None and not has_audio:
            raise InputError(ErrorCode.NO_AUDIO, "the video has no audio track whose voice the face could follow")
        voice = follow_voice(
            target.audio or audio,
            embedding_of(embed),
            library,
            neutral=target.neutral,
            intensity=target.intensity,
            duration_s=duration_s,
        )
        timeline = voice_timeline(voice)
        if timeline is None:  # every voiced window lay past the video's end
            return SpeechPlan(schedule=TimelineSchedule([], 0.0), voice=voice)
        return SpeechPlan(schedule=schedule_of(timeline, library, embed), timeline=timeline, voice=voice)
    target.check(max_segments, duration_s)
    return SpeechPlan(schedule=schedule_of(target, library, embed, express), timeline=target)
