"""`EditSpec`: everything about one edit, as the API stores it on the job and the worker runs it.

The API validates a request into it (after storing the uploaded files), the record keeps its
JSON, the worker `model_validate`s it back. Its options are `cmet_core`'s own (`FaceChoice`,
`EmotionChoice`), so the CLI, the request schema and the worker share one definition and one
set of limits. New edit features add their fields here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cmet_core.options import ClipWindow, EditOptions, FaceChoice, SheetChoice
from cmet_core.targets import MAX_SPEECH_CLIPS, EmotionChoice, EmotionTarget
from cmet_jobs.settings import JobsSettings


class InputRef(BaseModel):
    """Where an input file is: an object in our storage (`key`) or a URL the worker fetches."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str | None = Field(default=None, max_length=300)
    url: str | None = Field(default=None, max_length=2048)

    @model_validator(mode="after")
    def _exactly_one(self) -> InputRef:
        if (self.key is None) == (self.url is None):
            raise ValueError("an input is either a stored object (key) or a URL")
        return self


class EditSpec(EmotionChoice, FaceChoice, ClipWindow):
    """The inputs, the target (emotion or speech clips, intensity) and the options of an edit (or of a
    clip preview: `preview_s` set)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    video: InputRef
    speech: tuple[InputRef, ...] = Field(default=(), max_length=MAX_SPEECH_CLIPS)

    @model_validator(mode="after")
    def _one_target(self) -> EditSpec:
        if (self.emotion is None) == (not self.speech):
            raise ValueError("give exactly one of an emotion and speech clips")
        return self

    def target(self, speech: Sequence[Path]) -> EmotionTarget:
        """The target with the speech clips fetched to local paths (in the order of `speech`)."""
        return EmotionTarget(emotion=self.emotion, intensity=self.intensity, speech=tuple(speech))

    def options(self, settings: JobsSettings) -> EditOptions:
        return settings.edit_options(self)


class SheetSpec(SheetChoice, FaceChoice):
    """A contact sheet: the video, the rows (emotions, resolved to library names or custom ids) and columns
    (intensities), the frame and the face choice."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    video: InputRef

    def options(self, settings: JobsSettings) -> EditOptions:
        return settings.edit_options(self)
