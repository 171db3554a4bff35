"""The quality report of one output, with the thresholds its verdicts are read against.

Torch-free and model-free: the API and the job results import it. Each measure carries its numbers,
a verdict (`good`, `fair`, `poor`, or `unknown` where the numbers cannot be had) and one line that
says what the verdict means. The thresholds are here, in one place, so the README, the CLI and the
page quote the same numbers.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from cmet_core.errors import ErrorCode

IDENTITY_THRESHOLD = 0.6
"""dlib's descriptor distance above which two faces are taken for different people (dlib's own threshold;
on the fixtures one clip's frames are 0.2-0.3 apart, different people 0.59-1.02)."""
IDENTITY_GOOD = 0.4
"""Mean distance input -> output under this, with no sampled frame over the threshold: the same person."""
IDENTITY_FAIR_SHARE = 0.2
"""Mean under the threshold and at most this share of frames over it: fair."""

LIPS_GOOD = 0.8
LIPS_FAIR = 0.5
"""Correlation of the output's mouth opening with the input's (or, for a dub, with the speech's energy)."""

STEADINESS_GOOD = 1.5
STEADINESS_FAIR = 3.0
"""Output landmark jitter over the input's: at most 1.5x is good, up to 3x fair."""

EMOTION_SHIFT_FAIR = 0.1
"""The target's probability rose by at least this much: the expression moved toward it (fair)."""
EMOTION_REACHED = 0.5
"""The target's probability on the output at least this, or the target the output's top class: reached (good)."""

FACES_GOOD = 0.95
FACES_FAIR_MISSING = 0.1
"""Share of sampled output frames with a detected face at least 0.95 and none missing: good; at most 10 %
missing: fair."""

CLASSIFIER_NOTE = (
    "FER-2013-class classifier (fer's quantized model): a weak judge of expression; read its numbers as a trend"
)


class QualityProblem(BaseModel):
    """Why an edit with `quality` on has no report: its code (`quality_unavailable`) and message."""

    model_config = ConfigDict(frozen=True)

    code: ErrorCode
    message: str


class Verdict(StrEnum):
    GOOD = "good"
    FAIR = "fair"
    POOR = "poor"
    UNKNOWN = "unknown"


class _Measure(BaseModel):
    model_config = ConfigDict(frozen=True)

    verdict: Verdict
    line: str = Field(description="The verdict in one line, with the threshold it was read against.")


class IdentityMeasure(_Measure):
    mean_distance: float | None = Field(description="Mean dlib descriptor distance, input -> output.")
    over_threshold: float | None = Field(description=f"Share of compared frames over {IDENTITY_THRESHOLD}.")
    frames: int = Field(description="Frames compared.")


class LipsMeasure(_Measure):
    correlation: float | None = Field(
        description="Pearson correlation of the output's mouth opening with the input's at the same frames."
    )
    speech_correlation: float | None = Field(
        default=None,
        description="A dub: correlation of the output's mouth opening with the speech track's energy envelope at "
        "the best lag (a proxy, not SyncNet).",
    )
    speech_lag_s: float | None = Field(default=None, description="A dub: that best lag (mouth after speech > 0).")


class SteadinessMeasure(_Measure):
    output_jitter: float | None = Field(
        description="Median frame-to-frame landmark acceleration of the output, head motion removed, in "
        "interocular distances."
    )
    input_jitter: float | None
    ratio: float | None = Field(description="output_jitter / input_jitter.")


class EmotionSegment(BaseModel):
    """One stretch of a timeline (or the whole clip) and the classifier's view of it."""

    model_config = ConfigDict(frozen=True)

    start_s: float
    end_s: float
    target: str | None = Field(description="What the edit aimed at here.")
    target_class: str | None = Field(description="The classifier's class for the target; None: not one it knows.")
    input: dict[str, float] = Field(description="Mean class probabilities on the input's frames.")
    output: dict[str, float]
    target_in: float | None = None
    target_out: float | None = None
    shift: float | None = Field(default=None, description="target_out - target_in.")


class EmotionPoint(BaseModel):
    model_config = ConfigDict(frozen=True)

    t_s: float
    output: list[float] = Field(description="The output's class probabilities here, in `classes` order.")


class EmotionMeasure(_Measure):
    classifier: str = Field(description="What judged the expression, and how far to trust it.")
    classes: list[str]
    segments: list[EmotionSegment] = Field(description="The whole clip, or each timeline segment.")
    curve: list[EmotionPoint] = Field(description="The output's distribution over time (at most 120 points).")


class FacesMeasure(_Measure):
    tracked: float = Field(description="Share of sampled output frames where the face was detected.")
    bridged: float = Field(description="Not detected; the nearest detection (within a second) stood in.")
    missing: float


class QualityReport(BaseModel):
    """Every measure of one output against its input."""

    model_config = ConfigDict(frozen=True)

    sampled_frames: int = Field(
        description="Frames of the output measured (anchors; lips and steadiness add two frames after each)."
    )
    sample_fps: float
    identity: IdentityMeasure
    lips: LipsMeasure
    steadiness: SteadinessMeasure
    emotion: EmotionMeasure
    faces: FacesMeasure
    seconds: float = Field(description="Time it took to measure.")

    def measures(self) -> dict[str, _Measure]:
        return {
            "identity": self.identity,
            "lips": self.lips,
            "steadiness": self.steadiness,
            "emotion": self.emotion,
            "faces": self.faces,
        }
