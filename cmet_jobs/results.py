"""What a finished job made, one model per kind: the worker stores it on the record (`jobs.finish`), the API
reads it back through `jobs.result_of`, so a renamed field is a type error, not a silent `None`.

Stored JSON crosses versions: an API older than the worker reads it too, so fields are only added, with a
default, and fields a reader does not know are ignored (pydantic's default), unlike the stored spec
(`cmet_jobs.spec`), which a worker must refuse rather than run without an option.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from cmet_core.emotion.voice import VoiceSegment
from cmet_core.faces.turns import SpeakerTurn
from cmet_core.quality.report import QualityProblem, QualityReport


class EditResult(BaseModel):
    """An edit's or a clip preview's output video (a clip preview is an edit of a window)."""

    model_config = ConfigDict(frozen=True)

    frames: int
    fps: float
    duration_s: float
    width: int
    height: int
    connector: str | None = Field(
        default=None, description="name@version of the connector that made this edit; null for an expression reference."
    )
    segments: list[VoiceSegment] | None = Field(
        default=None,
        description="For `from_audio`: the segments found in the voice and applied; without `cosine` they "
        "are a `timeline` to submit back.",
    )
    quality: QualityReport | None = Field(
        default=None,
        description="With `quality` on: the output measured against the input, each measure with a verdict.",
    )
    quality_error: QualityProblem | None = Field(
        default=None, description="With `quality` on, why there is no report (`quality_unavailable`)."
    )
    speakers: list[SpeakerTurn] | None = Field(
        default=None,
        description="With a `faces` entry `select: speaker`: which face (its place from the left) spoke, and got "
        "that entry's emotion, when.",
    )


class SheetCell(BaseModel):
    """One cell of a contact sheet: its row and column, and where its image is stored."""

    model_config = ConfigDict(frozen=True)

    emotion: str
    intensity: float
    key: str


class SheetResult(BaseModel):
    """A contact sheet: the frame shown, the identity source, each cell (rows first) and seconds per stage."""

    model_config = ConfigDict(frozen=True)

    frame: int
    source_frame: int
    cells: list[SheetCell]
    seconds: dict[str, float]


JobResult = EditResult | SheetResult
