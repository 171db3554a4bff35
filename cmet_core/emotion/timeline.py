"""Emotion over time: a timeline of segments, each with its own target and intensity.

One definition serves every layer: `Timeline[S]` is generic in how a segment names its files (speech
clips, `SpeechClips`, or an expression reference, `ReferenceFile`: local paths for the CLI and the
pipeline; the API's assets and URLs; the job's stored inputs), while times, intensities, keyframes and
their rules are the same everywhere.

Times are seconds from the clip's first frame. Outside every segment an edit keeps the input's
own expression exactly; at a segment's edges the speech vector and the edit's weight move over
`transition_s` with a smoothstep (inside the segment at a free edge, centred on the boundary
between two segments that touch), so no frame jumps from one expression to another.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Generic, Self, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, FiniteFloat

from cmet_core.emotion.library import EMBEDDING_DIM
from cmet_core.emotion.targets import MAX_SPEECH_CLIPS, EmotionSpec, Intensity
from cmet_core.errors import ErrorCode, InputError

DEFAULT_TRANSITION_S = 0.3
MAX_TRANSITION_S = 5.0
DEFAULT_MAX_SEGMENTS = 64
MAX_KEYFRAMES = 64
END_TOLERANCE_S = 1e-3
"""A segment may end this much past the clip's probed duration (rounding of times to milliseconds)."""
TOUCH_S = 1e-6
"""Segments closer than this share their boundary: they cross-fade instead of fading to the input."""

Seconds = Annotated[FiniteFloat, Field(description="Seconds from the clip's first frame.")]


class Keyframe(BaseModel):
    """The intensity at one moment of a segment; between keyframes it changes linearly."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    t_s: Seconds
    intensity: Intensity


class SpeechClips(BaseModel):
    """A segment's target taken from speech clips on this machine (paths), as an edit's `speech` is."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    speech: tuple[Path, ...] = Field(min_length=1, max_length=MAX_SPEECH_CLIPS)
    neutral_speech: tuple[Path, ...] = Field(default=(), max_length=MAX_SPEECH_CLIPS)


class ReferenceTarget(BaseModel):
    """What every layer's expression-reference target is (a segment aiming at a reference face's
    expression, in the backbone's own space: no connector), however it names the file."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class ReferenceFile(ReferenceTarget):
    """A segment's target taken from a reference photo or short clip on this machine (a path)."""

    expression_reference: Path


S = TypeVar("S")
T = TypeVar("T")


class Segment(BaseModel, Generic[S]):
    """`target` is what an edit's `emotion` takes (a name, blend or custom emotion id) or speech clips.
    `intensity` holds over the whole segment unless `keyframes` are given: then the intensity
    follows them (held flat before the first and after the last)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    start_s: Seconds
    end_s: Seconds
    target: EmotionSpec | S
    intensity: Intensity = 1.0
    keyframes: tuple[Keyframe, ...] = Field(default=(), max_length=MAX_KEYFRAMES)

    @property
    def peak_intensity(self) -> float:
        return max((k.intensity for k in self.keyframes), default=self.intensity)

    def intensity_at(self, times_s: np.ndarray) -> np.ndarray:
        if not self.keyframes:
            return np.full(times_s.shape, self.intensity)
        curve: np.ndarray = np.interp(times_s, [k.t_s for k in self.keyframes], [k.intensity for k in self.keyframes])
        return curve


class Timeline(BaseModel, Generic[S]):
    """Segments in any order that must not overlap; `transition_s` is the length of each edge's fade."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    segments: tuple[Segment[S], ...] = Field(min_length=1)
    transition_s: float = Field(default=DEFAULT_TRANSITION_S, ge=0.0, le=MAX_TRANSITION_S)

    def speaks(self) -> bool:
        """Whether a segment aims at an emotion the connector makes (a name, a blend, speech clips): every
        target but an expression reference."""
        return any(not isinstance(s.target, ReferenceTarget) for s in self.segments)

    def ordered(self) -> list[Segment[S]]:
        return sorted(self.segments, key=lambda s: (s.start_s, s.end_s))

    def check(self, max_segments: int, duration_s: float | None = None) -> None:
        """The rules a schema cannot state, each with its own code; `duration_s` when the clip is known."""
        if len(self.segments) > max_segments:
            raise InputError(
                ErrorCode.TIMELINE_TOO_MANY_SEGMENTS,
                f"the timeline has {len(self.segments)} segments, at most {max_segments} are allowed",
            )
        for i, seg in enumerate(self.segments, start=1):  # counted as the page counts them: the first is 1
            where = f"segment {i} ({seg.start_s:g}-{seg.end_s:g} s)"
            if seg.start_s < 0 or seg.end_s < 0:
                raise InputError(ErrorCode.TIMELINE_BAD_TIMES, f"{where}: times must not be negative")
            if seg.end_s <= seg.start_s:
                raise InputError(ErrorCode.TIMELINE_BAD_TIMES, f"{where}: end_s must be after start_s")
            times = [k.t_s for k in seg.keyframes]
            if any(not seg.start_s <= t <= seg.end_s for t in times):
                raise InputError(ErrorCode.TIMELINE_BAD_TIMES, f"{where}: keyframes must lie inside their segment")
            if any(b <= a for a, b in zip(times, times[1:], strict=False)):
                raise InputError(ErrorCode.TIMELINE_BAD_TIMES, f"{where}: keyframe times must increase")
            if duration_s is not None and seg.end_s > duration_s + END_TOLERANCE_S:
                raise InputError(ErrorCode.TIMELINE_PAST_END, f"{where} ends past the clip's end at {duration_s:.3f} s")
        ordered = self.ordered()
        for a, b in zip(ordered, ordered[1:], strict=False):
            if b.start_s < a.end_s - TOUCH_S:
                raise InputError(
                    ErrorCode.TIMELINE_OVERLAP,
                    f"segments {a.start_s:g}-{a.end_s:g} s and {b.start_s:g}-{b.end_s:g} s overlap",
                )

    def windowed(self, start_s: float, length_s: float) -> Self:
        """The timeline on a window of the clip from `start_s` for `length_s` (a clip preview): times
        moved to the window's clock, segments outside it dropped, those it cuts cut with their
        intensity there kept. No segment in the window is `bad_preview_window`."""
        end_s = start_s + length_s
        segments = []
        for seg in self.segments:
            a, b = max(seg.start_s, start_s), min(seg.end_s, end_s)
            if b <= a:
                continue
            keys = [k for k in seg.keyframes if a < k.t_s < b]
            if seg.keyframes:
                at = seg.intensity_at(np.array([a, b]))
                keys = [Keyframe(t_s=a, intensity=float(at[0])), *keys, Keyframe(t_s=b, intensity=float(at[1]))]
            moved = tuple(Keyframe(t_s=k.t_s - start_s, intensity=k.intensity) for k in keys)
            segments.append(seg.model_copy(update={"start_s": a - start_s, "end_s": b - start_s, "keyframes": moved}))
        if not segments:
            raise InputError(
                ErrorCode.BAD_PREVIEW_WINDOW,
                f"no timeline segment lies in the preview window {start_s:g}-{end_s:g} s: it would show no edit",
            )
        return self.model_copy(update={"segments": tuple(segments)})

    def retarget(self, into: type[Timeline[T]], speech: Callable[[S], T | str]) -> Timeline[T]:
        """The same timeline with each speech target replaced (named targets kept), e.g. API refs -> stored inputs."""
        segments = [
            {**seg.model_dump(exclude={"target"}), "target": t if isinstance(t := seg.target, str) else speech(t)}
            for seg in self.segments
        ]
        return into.model_validate({"segments": segments, "transition_s": self.transition_s})


class ClipTimeline(Timeline[SpeechClips | ReferenceFile]):
    """A timeline whose file targets are local files: the CLI's `--timeline plan.json` and the pipeline's."""

    @classmethod
    def load(cls, path: Path) -> ClipTimeline:
        """A plan file; relative clip paths are taken from the plan's folder."""
        try:
            plan = cls.model_validate_json(path.read_bytes())
        except OSError as exc:
            raise InputError(ErrorCode.NOT_FOUND, f"cannot read timeline {path}: {exc.strerror or exc}") from None

        def rooted(files: SpeechClips | ReferenceFile) -> SpeechClips | ReferenceFile:
            if isinstance(files, ReferenceFile):
                return ReferenceFile(expression_reference=path.parent / files.expression_reference)
            return SpeechClips(
                speech=tuple(path.parent / p for p in files.speech),
                neutral_speech=tuple(path.parent / p for p in files.neutral_speech),
            )

        retargeted = plan.retarget(ClipTimeline, rooted)
        assert isinstance(retargeted, ClipTimeline)
        return retargeted


# ---------------------------------------------------------------------------------------------
# the schedule the connector reads


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    out: np.ndarray = x * x * (3.0 - 2.0 * x)
    return out


def _rise(t: np.ndarray, a: float, b: float) -> np.ndarray:
    """0 before a, 1 from b on, smooth between; a == b is a step at a (the segment owns its start)."""
    if b <= a:
        return (t >= a).astype(np.float64)
    return _smoothstep((t - a) / (b - a))


@dataclass(frozen=True)
class _Edges:
    rise: tuple[float, float]
    fall: tuple[float, float]


def _edges(segments: Sequence[tuple[float, float]], transition_s: float) -> list[_Edges]:
    """Each segment's fade-in and fade-out span: centred on a boundary two segments share, else inside it."""
    out = []
    for i, (start, end) in enumerate(segments):
        length = end - start
        prev = segments[i - 1] if i > 0 and abs(segments[i - 1][1] - start) < TOUCH_S else None
        nxt = segments[i + 1] if i + 1 < len(segments) and abs(segments[i + 1][0] - end) < TOUCH_S else None
        if prev is not None:
            half = min(transition_s / 2, length / 2, (prev[1] - prev[0]) / 2)
            rise = (start - half, start + half)
        else:
            rise = (start, start + min(transition_s, length / 2))
        if nxt is not None:
            half = min(transition_s / 2, length / 2, (nxt[1] - nxt[0]) / 2)
            fall = (end - half, end + half)
        else:
            fall = (end - min(transition_s, length / 2), end)
        out.append(_Edges(rise, fall))
    return out


@dataclass(frozen=True)
class Expression:
    """A target in the backbone's own expression space (a reference face's mean code, the backbone's width):
    frames move toward it directly, without the connector."""

    code: np.ndarray


Aim = np.ndarray | Expression
"""A resolved segment's target: a unit speech vector the connector reads, or an expression to move toward."""


class TimelineSchedule:
    """A resolved timeline: each segment's aim (a unit speech vector or an `Expression`) and intensity curve,
    read at any times.

    `vectors(t)` is what the connector's window at t reads; `presence(t)` is how much of the
    connector's delta a frame at t keeps (0 outside every speech segment, 1 well inside one);
    `pulls(t)` how far a frame at t moves toward each expression segment's code.
    """

    def __init__(self, segments: Sequence[tuple[Segment[Any], Aim]], transition_s: float) -> None:
        self.segments = sorted(segments, key=lambda s: s[0].start_s)
        self.transition_s = transition_s
        self.edges = _edges([(s.start_s, s.end_s) for s, _ in self.segments], transition_s)

    @property
    def speaks(self) -> bool:
        """Whether any segment is the connector's (an empty schedule, `from_audio` without voice, counts)."""
        return not self.segments or any(not isinstance(aim, Expression) for _, aim in self.segments)

    @property
    def settle_sigma_s(self) -> float:
        return self.transition_s / 2

    def settling(self, times_s: np.ndarray) -> np.ndarray:
        """1 over each edge's fade, falling to 0 over another half transition on both sides."""
        t = np.asarray(times_s, dtype=np.float64)
        out = np.zeros(len(t))
        margin = self.transition_s / 2
        if margin <= 0:
            return out
        for edge in self.edges:
            for a, b in (edge.rise, edge.fall):
                distance = np.maximum(np.abs(t - (a + b) / 2) - (b - a) / 2, 0.0)
                out = np.maximum(out, np.clip(1 - distance / margin, 0.0, 1.0))
        return out

    def _weights(self, times_s: np.ndarray, expression: bool) -> list[tuple[Segment[Any], Aim, np.ndarray]]:
        """The segments of one kind (expression aims, or the connector's) with their weights at `times_s`; the
        edges are computed over every segment, so a speech segment and a reference beside it cross-fade."""
        t = np.asarray(times_s, dtype=np.float64)
        return [
            (seg, aim, _rise(t, *e.rise) * (1.0 - _rise(t, *e.fall)))
            for (seg, aim), e in zip(self.segments, self.edges, strict=True)
            if isinstance(aim, Expression) == expression
        ]

    def presence(self, times_s: np.ndarray) -> np.ndarray:
        weights = [w for _, _, w in self._weights(times_s, expression=False)]
        total = np.sum(weights, axis=0) if weights else np.zeros(len(times_s))
        return np.clip(total, 0.0, 1.0)

    def vectors(self, times_s: np.ndarray) -> np.ndarray:
        t = np.asarray(times_s, dtype=np.float64)
        speech = [(seg, unit, w) for seg, unit, w in self._weights(t, expression=False) if isinstance(unit, np.ndarray)]
        dim = speech[0][1].shape[0] if speech else EMBEDDING_DIM
        acc = np.zeros((len(t), dim), dtype=np.float64)
        for seg, unit, weight in speech:
            acc += (weight * seg.intensity_at(t))[:, None] * unit.astype(np.float64)[None, :]
        return acc.astype(np.float32)

    def pulls(self, times_s: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """(len(times), K) weights and (K, width) codes of the K expression segments: a frame at t moves by
        weight (the edge's fade times the segment's intensity) from its own code toward each; None without any."""
        t = np.asarray(times_s, dtype=np.float64)
        found = self._weights(t, expression=True)
        if not found:
            return None
        weights = np.stack([w * seg.intensity_at(t) for seg, _, w in found], axis=1)
        codes = np.stack([aim.code for _, aim, _ in found if isinstance(aim, Expression)])
        return weights, codes
