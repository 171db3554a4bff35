"""What emotion an edit aims at, and the speech semantic vector it becomes.

A target is a named emotion or blend from an emotion library, the user's own speech clips
(optionally with their own neutral clips), or an expression reference (a photo or short clip of a
face making the wanted expression). The first two end as one 1024-d emotion2vec+ difference
vector, which is all the connector reads; a reference is read by the backbone's own expression
encoder instead and needs no connector (`cmet_core/edit/reference.py`, decision 0040).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from cmet_core.emotion.library import MAX_INTENSITY, EmotionLibrary, UnknownEmotionError, mean_embedding, resolve, scale
from cmet_core.errors import ErrorCode, InputError

MAX_SPEECH_CLIPS = 8
"""Speech clips per target (and neutral clips beside them), in the CLI, the API and a job alike."""

Embed = Callable[[Sequence[Path]], np.ndarray]

EmotionSpec = Annotated[
    str,
    Field(
        min_length=1,
        max_length=500,
        description="A library emotion or a blend such as 'happy=0.6,surprised=0.4'.",
        examples=["sarcastic", "happy=0.6,surprised=0.4"],
    ),
]
Intensity = Annotated[float, Field(ge=0.0, le=MAX_INTENSITY, description="0 keeps the input's emotion, 1 as recorded.")]


class EmotionChoice(BaseModel):
    """The named part of a target, as a user gives it: an emotion or blend (or none, for speech) and how strongly."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    emotion: EmotionSpec | None = None
    intensity: Intensity = 1.0


class EmotionTarget(EmotionChoice):
    """`emotion` ("sarcastic" or "happy=0.6,surprised=0.4"), `speech` clips or an `expression_reference`:
    exactly one."""

    speech: tuple[Path, ...] = Field(
        default=(), max_length=MAX_SPEECH_CLIPS, description="Speech clips carrying the emotion."
    )
    neutral_speech: tuple[Path, ...] = Field(
        default=(),
        max_length=MAX_SPEECH_CLIPS,
        description="The same speaker speaking neutrally; default: the library's neutral mean.",
    )
    expression_reference: Path | None = Field(
        default=None, description="A photo or short clip of a face making the wanted expression."
    )

    @model_validator(mode="after")
    def _one_source(self) -> EmotionTarget:
        if (self.emotion is not None) + bool(self.speech) + (self.expression_reference is not None) != 1:
            raise ValueError("give exactly one of an emotion (name or blend), speech clips and an expression reference")
        if self.neutral_speech and not self.speech:
            raise ValueError("neutral speech only makes sense with speech clips")
        return self

    def describe(self) -> str:
        what = self.emotion if self.emotion is not None else f"speech ({len(self.speech)} clips)"
        if self.expression_reference is not None:
            what = f"the expression of {self.expression_reference.name}"
        return f"{what} at intensity {self.intensity:g}"


def semantic_vector(target: EmotionTarget, library: EmotionLibrary, embed: Embed) -> np.ndarray:
    """The float32 vector for `target`; `embed` is only called for speech targets (it loads emotion2vec).
    An expression reference has none: the connector never reads it."""
    if target.expression_reference is not None:
        raise ValueError("an expression reference has no speech semantic vector")
    if target.emotion is not None:
        try:
            return resolve(target.emotion, library, target.intensity)
        except UnknownEmotionError as exc:
            raise InputError(ErrorCode.UNKNOWN_EMOTION, str(exc)) from None
        except ValueError as exc:
            raise InputError(ErrorCode.BAD_EMOTION, str(exc)) from None
    try:
        emotional = mean_embedding(list(embed(list(target.speech))))
        neutral = (
            mean_embedding(list(embed(list(target.neutral_speech)))) if target.neutral_speech else library.neutral.mean
        )
    except InputError:
        raise
    except ValueError as exc:
        raise InputError(ErrorCode.BAD_SPEECH, str(exc)) from None
    return scale(emotional - neutral, target.intensity)
