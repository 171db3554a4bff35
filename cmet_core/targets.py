"""What emotion an edit aims at, and the speech semantic vector it becomes.

A target is either a named emotion or blend from an emotion library, or the user's own speech
clips (optionally with their own neutral clips). Both end as one 1024-d emotion2vec+ difference
vector, which is all the connector reads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from cmet_core.emotions import MAX_INTENSITY, EmotionLibrary, UnknownEmotionError, mean_embedding, resolve, scale
from cmet_core.errors import InputError

MAX_SPEECH_CLIPS = 32

Embed = Callable[[Sequence[Path]], np.ndarray]


class EmotionTarget(BaseModel):
    """`emotion` ("sarcastic" or "happy=0.6,surprised=0.4") or `speech` clips, never both."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    emotion: str | None = Field(default=None, description="A library emotion or a blend such as 'happy=0.6,surprised=0.4'.")
    speech: tuple[Path, ...] = Field(default=(), max_length=MAX_SPEECH_CLIPS, description="Speech clips carrying the emotion.")
    neutral_speech: tuple[Path, ...] = Field(
        default=(), max_length=MAX_SPEECH_CLIPS, description="The same speaker speaking neutrally; default: the library's neutral mean."
    )
    intensity: float = Field(default=1.0, ge=0.0, le=MAX_INTENSITY, description="0 keeps the input's emotion, 1 as recorded.")

    @model_validator(mode="after")
    def _one_source(self) -> EmotionTarget:
        if (self.emotion is None) == (not self.speech):
            raise ValueError("give exactly one of an emotion (name or blend) and speech clips")
        if self.neutral_speech and not self.speech:
            raise ValueError("neutral speech only makes sense with speech clips")
        return self

    def describe(self) -> str:
        what = self.emotion if self.emotion is not None else f"speech ({len(self.speech)} clips)"
        return f"{what} at intensity {self.intensity:g}"


def semantic_vector(target: EmotionTarget, library: EmotionLibrary, embed: Embed) -> np.ndarray:
    """The float32 vector for `target`; `embed` is only called for speech targets (it loads emotion2vec)."""
    if target.emotion is not None:
        try:
            return resolve(target.emotion, library, target.intensity)
        except UnknownEmotionError as exc:
            raise InputError("unknown_emotion", str(exc)) from None
        except ValueError as exc:
            raise InputError("bad_emotion", str(exc)) from None
    try:
        emotional = mean_embedding(list(embed(list(target.speech))))
        neutral = mean_embedding(list(embed(list(target.neutral_speech)))) if target.neutral_speech else library.neutral.mean
    except InputError:
        raise
    except ValueError as exc:
        raise InputError("bad_speech", str(exc)) from None
    return scale(emotional - neutral, target.intensity)
