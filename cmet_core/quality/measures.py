"""The five measures, from the readings of an input and its output (`readings.py`), with their verdicts
against the thresholds in `report.py`.

Input and output are paired anchor by anchor when they have the same frame count (an edit); otherwise
(a dub, another tool's retimed output) identity is measured against the mean of the input's
descriptors and the lips against the speech track only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cmet_core.quality.models import CLASSES
from cmet_core.quality.readings import FaceStatus, Reading
from cmet_core.quality.report import (
    CLASSIFIER_NOTE,
    EMOTION_REACHED,
    EMOTION_SHIFT_FAIR,
    FACES_FAIR_MISSING,
    FACES_GOOD,
    IDENTITY_FAIR_SHARE,
    IDENTITY_GOOD,
    IDENTITY_THRESHOLD,
    LIPS_FAIR,
    LIPS_GOOD,
    STEADINESS_FAIR,
    STEADINESS_GOOD,
    EmotionMeasure,
    EmotionPoint,
    EmotionSegment,
    FacesMeasure,
    IdentityMeasure,
    LipsMeasure,
    SteadinessMeasure,
    Verdict,
)

TARGET_CLASS = {
    "angry": "angry",
    "disgusted": "disgust",
    "disgust": "disgust",
    "fear": "fear",
    "happy": "happy",
    "sad": "sad",
    "surprised": "surprise",
    "surprise": "surprise",
    "neutral": "neutral",
}
"""Library emotions the classifier knows; extended and custom emotions get the distribution only."""

_LIP_TOP, _LIP_BOTTOM = 13, 14  # inner lips, centre
_EYE_OUTER = (33, 263)
CURVE_POINTS = 120
MAX_LAG_S = 0.4
LAG_STEP_S = 0.02


@dataclass(frozen=True)
class Span:
    """A stretch of the output and what the edit aimed at there."""

    start_s: float
    end_s: float
    target: str | None


def _round(x: float | None, digits: int = 4) -> float | None:
    return None if x is None else round(float(x), digits)


def pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    """None where either signal is flat or too short to say."""
    if len(a) < 4 or float(np.std(a)) < 1e-9 or float(np.std(b)) < 1e-9:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def _pairs(inputs: Sequence[Reading], outputs: Sequence[Reading]) -> list[tuple[Reading, Reading]]:
    by_index = {r.index: r for r in inputs}
    return [(by_index[r.index], r) for r in outputs if r.index in by_index]


def identity(inputs: Sequence[Reading], outputs: Sequence[Reading], paired: bool) -> IdentityMeasure:
    if paired:
        pairs = [(a.descriptor, b.descriptor) for a, b in _pairs(inputs, outputs)]
        distances = [float(np.linalg.norm(a - b)) for a, b in pairs if a is not None and b is not None]
    else:
        known = [r.descriptor for r in inputs if r.descriptor is not None]
        centre = np.mean(known, axis=0) if known else None
        distances = [
            float(np.linalg.norm(r.descriptor - centre))
            for r in outputs
            if r.descriptor is not None and centre is not None
        ]
    if not distances:
        return IdentityMeasure(
            verdict=Verdict.UNKNOWN, line="no face to compare", mean_distance=None, over_threshold=None, frames=0
        )
    mean, over = float(np.mean(distances)), float(np.mean(np.array(distances) > IDENTITY_THRESHOLD))
    if mean < IDENTITY_GOOD and over == 0:
        verdict, what = Verdict.GOOD, "the same person"
    elif mean < IDENTITY_THRESHOLD and over <= IDENTITY_FAIR_SHARE:
        verdict, what = Verdict.FAIR, "the same person, drifting"
    else:
        verdict, what = Verdict.POOR, "the identity is lost"
    line = f"{what}: mean distance {mean:.2f} (good < {IDENTITY_GOOD}), {over:.0%} of frames over {IDENTITY_THRESHOLD}"
    return IdentityMeasure(
        verdict=verdict, line=line, mean_distance=_round(mean), over_threshold=_round(over), frames=len(distances)
    )


def opening(mesh: np.ndarray) -> float:
    """The mouth's inner opening over the eyes' outer distance (so it does not change with the face's size)."""
    return float(np.linalg.norm(mesh[_LIP_TOP] - mesh[_LIP_BOTTOM]) / _eyes(mesh))


def _eyes(mesh: np.ndarray) -> float:
    return float(np.linalg.norm(mesh[_EYE_OUTER[0]] - mesh[_EYE_OUTER[1]]))


def mouth_signal(readings: Sequence[Reading], fps: float) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
    """(times, openings, keys) of every burst frame with a mesh; a key is (anchor index, offset)."""
    times, values, keys = [], [], []
    for r in readings:
        for k, mesh in enumerate(r.meshes):
            if mesh is not None:
                times.append(r.time_s + k / fps)
                values.append(opening(mesh))
                keys.append((r.index, k))
    return np.array(times), np.array(values), keys


def _lips_verdict(value: float | None, what: str) -> tuple[Verdict, str]:
    if value is None:
        return Verdict.UNKNOWN, f"{what}: the mouth does not move in the sampled frames, or no face"
    verdict = Verdict.GOOD if value >= LIPS_GOOD else Verdict.FAIR if value >= LIPS_FAIR else Verdict.POOR
    return verdict, f"{what} {value:.2f} (good >= {LIPS_GOOD}, fair >= {LIPS_FAIR})"


def speech_envelope(path: Path, rate: int = 16000) -> tuple[np.ndarray, np.ndarray]:
    """(times, RMS energy) of a speech track in 20 ms hops over 40 ms windows."""
    from cmet_core.media.audio import load_audio  # deferred: only dubs need it

    audio = load_audio(path, rate)
    hop, win = rate // 50, rate // 25
    if len(audio) < win:
        return np.zeros(1), np.zeros(1)
    frames = np.lib.stride_tricks.sliding_window_view(audio, win)[::hop]
    return (np.arange(len(frames)) * hop + win / 2) / rate, np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))


def speech_sync(times: np.ndarray, mouth: np.ndarray, speech: Path) -> tuple[float | None, float | None]:
    """The best correlation of the mouth's opening with the speech's energy over lags of +-0.4 s, and that lag.

    A proxy for lip sync, not SyncNet: loud speech opens the mouth, but not syllable by syllable."""
    env_t, env = speech_envelope(speech)
    best: tuple[float | None, float | None] = (None, None)
    for lag in np.arange(-MAX_LAG_S, MAX_LAG_S + 1e-9, LAG_STEP_S):
        r = pearson(mouth, np.interp(times - lag, env_t, env))
        if r is not None and (best[0] is None or r > best[0]):
            best = (r, float(lag))
    return best


def lips(
    inputs: Sequence[Reading], outputs: Sequence[Reading], fps: float, paired: bool, speech: Path | None
) -> LipsMeasure:
    out_t, out_v, out_keys = mouth_signal(outputs, fps)
    correlation = None
    if paired:
        _, in_v, in_keys = mouth_signal(inputs, fps)
        shared = {key: i for i, key in enumerate(in_keys)}
        both = [(shared[key], j) for j, key in enumerate(out_keys) if key in shared]
        if both:
            a, b = (np.array(idx) for idx in zip(*both, strict=True))
            correlation = pearson(in_v[a], out_v[b])
    speech_r, lag = speech_sync(out_t, out_v, speech) if speech is not None else (None, None)
    if speech is not None:
        # no verdict: on the fixtures the proxy does not tell a clip's own speech (0.29) from another's (0.20-0.26)
        verdict = Verdict.UNKNOWN
        line = "mouth opening against the speech's energy (a weak proxy, not SyncNet; no verdict): " + (
            f"correlation {speech_r:.2f} at a lag of {lag:+.2f} s"
            if speech_r is not None and lag is not None
            else "the mouth does not move in the sampled frames, or no face"
        )
    elif paired:
        verdict, line = _lips_verdict(correlation, "mouth opening follows the input's: correlation")
    else:
        verdict, line = Verdict.UNKNOWN, "the videos differ in length and no speech track was given: nothing to pair"
    return LipsMeasure(
        verdict=verdict,
        line=line,
        correlation=_round(correlation),
        speech_correlation=_round(speech_r),
        speech_lag_s=_round(lag, 2),
    )


def _aligned(points: np.ndarray, onto: np.ndarray) -> np.ndarray:
    """`points` moved onto `onto` by the best similarity transform (Umeyama): the head's motion taken out."""
    mu_p, mu_o = points.mean(0), onto.mean(0)
    p, o = points - mu_p, onto - mu_o
    u, s, vt = np.linalg.svd(o.T @ p)
    d = np.sign(np.linalg.det(u @ vt))
    rotation = u @ np.diag([1.0, d]) @ vt
    scale = (s * np.array([1.0, d])).sum() / (p**2).sum()
    return np.asarray((scale * (rotation @ p.T)).T + mu_o)


def jitter(readings: Sequence[Reading]) -> float | None:
    """Median over bursts of the mean landmark acceleration (frame to frame, head motion removed), in
    interocular distances."""
    values = []
    for r in readings:
        if len(r.meshes) < 3 or any(m is None for m in r.meshes[:3]):
            continue
        m0, m1, m2 = r.meshes[0], r.meshes[1], r.meshes[2]
        assert m0 is not None and m1 is not None and m2 is not None
        acc = _aligned(m0, m1) - 2 * m1 + _aligned(m2, m1)
        values.append(float(np.linalg.norm(acc, axis=1).mean()) / _eyes(m1))
    return float(np.median(values)) if values else None


def steadiness(inputs: Sequence[Reading], outputs: Sequence[Reading]) -> SteadinessMeasure:
    out_j, in_j = jitter(outputs), jitter(inputs)
    ratio = out_j / in_j if out_j is not None and in_j is not None and in_j > 0 else None
    if ratio is None:
        verdict, line = Verdict.UNKNOWN, "no landmarks in enough consecutive frames"
    else:
        verdict = Verdict.POOR if ratio > STEADINESS_FAIR else Verdict.FAIR if ratio > STEADINESS_GOOD else Verdict.GOOD
        line = f"landmark jitter {ratio:.2f}x the input's (good <= {STEADINESS_GOOD}x, fair <= {STEADINESS_FAIR}x)"
    return SteadinessMeasure(
        verdict=verdict, line=line, output_jitter=_round(out_j, 5), input_jitter=_round(in_j, 5), ratio=_round(ratio, 3)
    )


def _mean_distribution(readings: Sequence[Reading], span: Span) -> np.ndarray | None:
    inside = [r.emotion for r in readings if r.emotion is not None and span.start_s <= r.time_s < span.end_s]
    return np.mean(inside, axis=0) if inside else None


def _named(p: np.ndarray | None) -> dict[str, float]:
    return {} if p is None else {c: round(float(v), 4) for c, v in zip(CLASSES, p, strict=True)}


def _segment(inputs: Sequence[Reading], outputs: Sequence[Reading], span: Span) -> EmotionSegment:
    p_in, p_out = _mean_distribution(inputs, span), _mean_distribution(outputs, span)
    cls = TARGET_CLASS.get(span.target) if span.target is not None else None
    k = CLASSES.index(cls) if cls is not None else None
    t_in = float(p_in[k]) if k is not None and p_in is not None else None
    t_out = float(p_out[k]) if k is not None and p_out is not None else None
    return EmotionSegment(
        start_s=round(span.start_s, 3),
        end_s=round(span.end_s, 3),
        target=span.target,
        target_class=cls,
        input=_named(p_in),
        output=_named(p_out),
        target_in=_round(t_in),
        target_out=_round(t_out),
        shift=_round(t_out - t_in) if t_in is not None and t_out is not None else None,
    )


def _curve(outputs: Sequence[Reading]) -> list[EmotionPoint]:
    known = [r for r in outputs if r.emotion is not None]
    groups = np.array_split(np.arange(len(known)), min(len(known), CURVE_POINTS)) if known else []
    return [
        EmotionPoint(
            t_s=round(float(np.mean([known[i].time_s for i in g])), 3),
            output=[round(float(v), 4) for v in np.mean([known[i].emotion for i in g], axis=0)],
        )
        for g in groups
        if len(g)
    ]


def _emotion_verdict(segments: Sequence[EmotionSegment]) -> tuple[Verdict, str]:
    judged = [s for s in segments if s.target_out is not None and s.shift is not None]
    if not judged:
        top = max(segments[0].output.items(), key=lambda kv: kv[1])[0] if segments and segments[0].output else None
        return Verdict.UNKNOWN, (
            "the target is not a class the classifier knows: distribution only"
            + (f" (output's top class: {top})" if top else "")
        )
    verdicts = []
    for s in judged:
        assert s.target_out is not None and s.shift is not None
        top = max(s.output.items(), key=lambda kv: kv[1])[0]
        reached = s.target_out >= EMOTION_REACHED or top == s.target_class
        verdicts.append(Verdict.GOOD if reached else Verdict.FAIR if s.shift >= EMOTION_SHIFT_FAIR else Verdict.POOR)
    worst = max(verdicts, key=[Verdict.GOOD, Verdict.FAIR, Verdict.POOR].index)
    s = judged[0]
    what = {Verdict.GOOD: "reached", Verdict.FAIR: "moved toward the target", Verdict.POOR: "not reached"}[worst]
    detail = (
        f"p({s.target_class}) {s.target_in:.2f} -> {s.target_out:.2f}"
        if len(judged) == 1
        else f"{sum(v == Verdict.GOOD for v in verdicts)}/{len(judged)} segments reached"
    )
    return worst, (
        f"{what}: {detail} (good: >= {EMOTION_REACHED} or the top class; fair: +{EMOTION_SHIFT_FAIR}); "
        "a weak FER-2013 classifier"
    )


def emotion(
    inputs: Sequence[Reading], outputs: Sequence[Reading], spans: Sequence[Span], classifier: str
) -> EmotionMeasure:
    segments = [_segment(inputs, outputs, span) for span in spans]
    verdict, line = _emotion_verdict(segments)
    return EmotionMeasure(
        verdict=verdict,
        line=line,
        classifier=classifier or CLASSIFIER_NOTE,
        classes=list(CLASSES),
        segments=segments,
        curve=_curve(outputs),
    )


def faces(outputs: Sequence[Reading]) -> FacesMeasure:
    n = max(len(outputs), 1)
    share = {s: sum(r.status == s for r in outputs) / n for s in FaceStatus}
    tracked, bridged, missing = share[FaceStatus.TRACKED], share[FaceStatus.BRIDGED], share[FaceStatus.MISSING]
    if tracked >= FACES_GOOD and missing == 0:
        verdict = Verdict.GOOD
    elif missing <= FACES_FAIR_MISSING:
        verdict = Verdict.FAIR
    else:
        verdict = Verdict.POOR
    line = (
        f"face tracked in {tracked:.0%} of sampled frames, bridged {bridged:.0%}, missing {missing:.0%} "
        f"(good: >= {FACES_GOOD:.0%} tracked, none missing)"
    )
    return FacesMeasure(
        verdict=verdict, line=line, tracked=round(tracked, 4), bridged=round(bridged, 4), missing=round(missing, 4)
    )
