"""Follow the voice (`emotion: "from_audio"`): the emotion of the speech, window by window, as a timeline.

Why fixed overlapping windows (2 s every 1 s) rather than utterances cut by an energy VAD:
emotion2vec+ gives stable utterance vectors from about 1-2 s of speech, and a VAD's cuts depend
on the recording's level and noise floor (a music bed or room tone merges every sentence into
one, a breathy speaker splits them into fragments too short to embed). Fixed windows give a
regular time grid to smooth over, equal lengths that batch without padding, and a worst-case
cost known from the duration alone. Energy is still read, per window, only to tell silence from
speech: silent windows are not embedded, and the emotion before them decays toward the input's
own over `DECAY_S`.

Each voiced window's embedding minus the neutral reference (the library's neutral mean, or with
`neutral="self"` the speaker's calmest window: the one closest to that mean, which removes the
speaker's and the channel's own offset) is smoothed with its neighbours, then matched to the
library's named emotions by cosine. The applied timeline uses the nearest named emotion's vector
at the fitted intensity rather than the raw voice vector: the vectors the connector was trained
on, and the listed segments are exactly what was applied, so a client resubmitting them as an
explicit timeline gets the same edit.
"""

from __future__ import annotations

import math
import tempfile
import wave
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from cmet_core.emotion.library import MAX_INTENSITY, NEUTRAL, EmotionLibrary
from cmet_core.emotion.targets import Embed, Intensity
from cmet_core.emotion.timeline import ClipTimeline, Keyframe, Segment, SpeechClips
from cmet_core.errors import ErrorCode, InputError
from cmet_core.media.audio import load_audio

FROM_AUDIO = "from_audio"
"""The `emotion` value that makes the face follow the emotion of the speech."""

SAMPLE_RATE = 16000
WINDOW_S = 2.0
HOP_S = 1.0
SILENCE_DB = 35.0
"""A window this many dB below the loudest window (or below `FLOOR_DBFS`) is silence."""
FLOOR_DBFS = -55.0
MIN_COSINE = 0.8
"""Weaker matches than this are neutral: real MEAD emotional clips match their emotion at 0.93-0.97,
neutral ones their nearest emotion at 0.52 (median) to 0.79 (90th percentile)."""
MIN_INTENSITY = 0.35
"""A window whose fit to its nearest emotion is weaker than this is neutral (a faint tint is noise)."""
MIN_RUN_WINDOWS = 2
DECAY_S = 1.0
DECAY_STEP_S = 0.25
DECAY_FLOOR = 0.05
SMOOTHING = (0.25, 0.5, 0.25)

NeutralChoice = Annotated[
    Literal["library", "self"],
    Field(description="What the voice is compared with: the library's neutral mean, or the speaker's calmest window."),
]


class VoiceChoice(BaseModel):
    """The options of following the voice, beside an edit's `emotion: "from_audio"`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    neutral: NeutralChoice = "library"


class FollowVoice(VoiceChoice):
    """A target: the emotion of the speech in `audio` (default: the video's own audio track)."""

    intensity: Intensity = 1.0
    audio: Path | None = None


class VoiceSegment(BaseModel):
    """A stretch of the voice and the emotion found there; without `cosine` it is a timeline segment
    (`neutral` has no direction, so no cosine)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    start_s: float
    end_s: float
    target: str
    intensity: float
    cosine: float | None = Field(description="Cosine between the voice's vector and the named emotion's.")
    keyframes: tuple[Keyframe, ...] = ()

    def segment(self) -> Segment[SpeechClips]:
        return Segment[SpeechClips].model_validate(self.model_dump(exclude={"cosine"}))


@dataclass(frozen=True)
class Window:
    start_s: float
    end_s: float
    samples: np.ndarray
    voiced: bool

    @property
    def centre_s(self) -> float:
        return (self.start_s + self.end_s) / 2


WindowEmbed = Callable[[Sequence[Window]], np.ndarray]
"""Embeddings (N, 1024) of N windows; `embedding_of(embed)` in production, a stand-in in tests."""


def speech_windows(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> list[Window]:
    """Windows of `WINDOW_S` every `HOP_S`, the last one ending at the end; one window for a shorter clip."""
    n = len(audio)
    size, hop = int(WINDOW_S * sample_rate), int(HOP_S * sample_rate)
    starts = list(range(0, max(n - size, 0) + 1, hop))
    if starts[-1] + size < n:
        starts.append(n - size)
    spans = [(a, min(a + size, n)) for a in starts]
    rms = np.array([math.sqrt(float(np.mean(np.square(audio[a:b], dtype=np.float64)))) for a, b in spans])
    level = 20 * np.log10(np.maximum(rms, 1e-12))
    voiced = (level >= level.max() - SILENCE_DB) & (level >= FLOOR_DBFS)
    return [
        Window(a / sample_rate, b / sample_rate, audio[a:b], bool(v)) for (a, b), v in zip(spans, voiced, strict=True)
    ]


def embedding_of(embed: Embed) -> WindowEmbed:
    """Windows through the editor's own emotion2vec+ function, in one call (it batches them)."""

    def run(windows: Sequence[Window]) -> np.ndarray:
        with tempfile.TemporaryDirectory(prefix="cmet-voice-") as scratch:
            paths = []
            for i, w in enumerate(windows):
                paths.append(Path(scratch) / f"window{i:05d}.wav")
                with wave.open(str(paths[-1]), "wb") as f:
                    f.setnchannels(1)
                    f.setsampwidth(2)
                    f.setframerate(SAMPLE_RATE)
                    f.writeframes((np.clip(w.samples, -1, 1) * 32767).round().astype("<i2").tobytes())
            return np.asarray(embed(paths), dtype=np.float64)

    return run


@dataclass(frozen=True)
class _Run:
    first: int
    last: int  # index into the voiced windows, inclusive
    label: str


def _smoothed(vectors: np.ndarray, touching: list[bool]) -> np.ndarray:
    """Each window averaged with its neighbours (weights `SMOOTHING`), never across silence."""
    out = np.empty_like(vectors)
    w_prev, w_self, w_next = SMOOTHING
    for i in range(len(vectors)):
        acc, total = w_self * vectors[i], w_self
        if i > 0 and touching[i - 1]:
            acc, total = acc + w_prev * vectors[i - 1], total + w_prev
        if i + 1 < len(vectors) and touching[i]:
            acc, total = acc + w_next * vectors[i + 1], total + w_next
        out[i] = acc / total
    return out


def _nearest(d: np.ndarray, units: dict[str, np.ndarray]) -> tuple[str, float, float]:
    """(emotion, cosine, fitted intensity) of the best match, or neutral when none is strong enough."""
    norm = float(np.linalg.norm(d))
    best, best_cos, best_fit = NEUTRAL, -1.0, 0.0
    for name, u in units.items():
        cos = float(d @ u) / max(norm * float(np.linalg.norm(u)), 1e-12)
        if cos > best_cos:
            best, best_cos, best_fit = name, cos, float(d @ u) / float(u @ u)
    if best_cos < MIN_COSINE or best_fit < MIN_INTENSITY:
        return NEUTRAL, best_cos, 0.0
    return best, best_cos, best_fit


def _merge_short(runs: list[_Run], touching: list[bool]) -> list[_Run]:
    """Runs of fewer than `MIN_RUN_WINDOWS` windows (a window straddling two emotions) join the
    longer neighbour they touch; runs alone between silences stay."""
    runs = list(runs)
    while True:
        short = [
            i
            for i, r in enumerate(runs)
            if r.last - r.first + 1 < MIN_RUN_WINDOWS
            and ((i > 0 and touching[runs[i - 1].last]) or (i + 1 < len(runs) and touching[r.last]))
        ]
        if not short:
            return runs
        i = short[0]
        r = runs[i]
        prev = runs[i - 1] if i > 0 and touching[runs[i - 1].last] else None
        nxt = runs[i + 1] if i + 1 < len(runs) and touching[r.last] else None
        if prev is not None and (nxt is None or prev.last - prev.first >= nxt.last - nxt.first):
            runs[i - 1 : i + 1] = [_Run(prev.first, r.last, prev.label)]
        else:
            assert nxt is not None
            runs[i : i + 2] = [_Run(r.first, nxt.last, nxt.label)]
        # neighbours that now share an emotion and touch become one run
        merged: list[_Run] = []
        for run in runs:
            if merged and merged[-1].label == run.label and touching[merged[-1].last]:
                merged[-1] = _Run(merged[-1].first, run.last, run.label)
            else:
                merged.append(run)
        runs = merged


def voice_segments(
    windows: Sequence[Window],
    embeddings: np.ndarray,
    library: EmotionLibrary,
    *,
    neutral: str = "library",
    intensity: float = 1.0,
    duration_s: float | None = None,
) -> list[VoiceSegment]:
    """The segments of the voiced windows (`embeddings`: one row per voiced window, in order)."""
    index = [i for i, w in enumerate(windows) if w.voiced]
    if not index:
        return []
    x = np.asarray(embeddings, dtype=np.float64).reshape(len(index), -1)
    reference = library.neutral.mean.astype(np.float64)
    if neutral == "self":
        reference = x[int(np.argmin(np.linalg.norm(x - reference, axis=1)))]
    touching = [b - a == 1 for a, b in zip(index, index[1:], strict=False)] + [False]
    d = _smoothed(x - reference, touching)
    units = {n: library.vector(n).astype(np.float64) for n in library.names() if n != NEUTRAL}
    units = {n: u for n, u in units.items() if float(np.linalg.norm(u)) > 0}
    found = [_nearest(v, units) for v in d]
    runs: list[_Run] = []
    for k, (label, _cos, _fit) in enumerate(found):
        if runs and runs[-1].label == label and touching[k - 1]:
            runs[-1] = _Run(runs[-1].first, k, label)
        else:
            runs.append(_Run(k, k, label))
    runs = _merge_short(runs, touching)

    end = duration_s if duration_s is not None else windows[-1].end_s
    centres = [w.centre_s for w in windows]
    owned_from = [0.0] + [(a + b) / 2 for a, b in zip(centres, centres[1:], strict=False)]
    owned_to = owned_from[1:] + [windows[-1].end_s]
    segments: list[VoiceSegment] = []
    for n, run in enumerate(runs):
        start, stop = owned_from[index[run.first]], owned_to[index[run.last]]
        if start >= end:
            break
        stop = min(stop, end)
        ks = range(run.first, run.last + 1)
        if run.label == NEUTRAL:
            level, cosine = min(intensity, MAX_INTENSITY), None
        else:
            u = units[run.label]
            mean = d[run.first : run.last + 1].mean(axis=0)
            cosine = round(float(mean @ u) / max(float(np.linalg.norm(mean) * np.linalg.norm(u)), 1e-12), 3)
            level = min(MAX_INTENSITY, float(np.mean([float(d[k] @ u) / float(u @ u) for k in ks])) * intensity)
        level = round(max(level, 0.0), 3)
        keyframes: tuple[Keyframe, ...] = ()
        touches_next = n + 1 < len(runs) and touching[run.last]
        if run.label != NEUTRAL and not touches_next and level > 0:
            # silence follows: hold the emotion and let it decay toward the input's own
            next_start = owned_from[index[runs[n + 1].first]] if n + 1 < len(runs) else end
            decay_end = min(end, next_start, stop + DECAY_S * math.log(1 / DECAY_FLOOR))
            steps = int((decay_end - stop) / DECAY_STEP_S)
            if steps > 0:
                times = [stop + i * DECAY_STEP_S for i in range(steps + 1)]
                keyframes = tuple(
                    Keyframe(t_s=round(t, 3), intensity=round(level * math.exp(-(t - stop) / DECAY_S), 3))
                    for t in times
                )
                stop = times[-1]
        segments.append(
            VoiceSegment(
                start_s=round(start, 3),
                end_s=round(stop, 3),
                target=run.label,
                intensity=level,
                cosine=cosine,
                keyframes=keyframes,
            )
        )
    return segments


def follow_voice(
    audio: Path,
    embed: WindowEmbed,
    library: EmotionLibrary,
    *,
    neutral: str = "library",
    intensity: float = 1.0,
    duration_s: float | None = None,
) -> list[VoiceSegment]:
    """The emotion segments of the speech in `audio` (a video's own track or a separate file)."""
    samples = load_audio(audio, SAMPLE_RATE)
    windows = speech_windows(samples)
    voiced = [w for w in windows if w.voiced]
    if not voiced:
        raise InputError(ErrorCode.BAD_SPEECH, f"{audio.name}: the audio holds no speech to follow")
    try:
        embeddings = embed(voiced)
    except InputError:
        raise
    except ValueError as exc:
        raise InputError(ErrorCode.BAD_SPEECH, str(exc)) from None
    return voice_segments(windows, embeddings, library, neutral=neutral, intensity=intensity, duration_s=duration_s)


def voice_timeline(segments: Sequence[VoiceSegment], transition_s: float | None = None) -> ClipTimeline | None:
    """The timeline that applies `segments` (None when there are none)."""
    if not segments:
        return None
    fields: dict[str, object] = {"segments": [s.segment().model_dump() for s in segments]}
    if transition_s is not None:
        fields["transition_s"] = transition_s
    return ClipTimeline.model_validate(fields)
