"""`EditSpec`: everything about one edit, as the API stores it on the job and the worker runs it.

The API validates a request into it (after storing the uploaded files), the record keeps its
JSON, the worker `model_validate`s it back. Its target fields (`EmotionChoice`, `VoiceChoice`)
and its choices (`EditChoices`) are `cmet_core`'s own, so the CLI, the request schema and the
worker share one definition. New edit options are fields of `EditChoices`, not of this module;
the deployment's limits are never stored here (`JobsSettings.limits` gives them to the worker).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cmet_core.emotion.targets import MAX_SPEECH_CLIPS, EmotionChoice, EmotionTarget
from cmet_core.emotion.timeline import ClipTimeline, SpeechClips, Timeline
from cmet_core.emotion.voice import FROM_AUDIO, FollowVoice, VoiceChoice
from cmet_core.options import EditChoices, FaceChoice, Limits, SheetChoice
from cmet_jobs.settings import JobsSettings

if TYPE_CHECKING:
    from cmet_core.emotion.speech_plan import EditTarget  # it needs torch; the API never imports it


class InputRef(BaseModel):
    """Where an input file is: an object in our storage (`key`) or a URL the worker fetches."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str | None = Field(default=None, max_length=300)
    url: str | None = Field(default=None, max_length=2048)
    name: str | None = Field(
        default=None, max_length=300, description="The file's name as its sender gave it (lists show it), if known."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> InputRef:
        if (self.key is None) == (self.url is None):
            raise ValueError("an input is either a stored object (key) or a URL")
        return self


class StoredSpeech(BaseModel):
    """A timeline segment's speech clips, stored with the job's inputs (or URLs)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    speech: tuple[InputRef, ...] = Field(min_length=1, max_length=MAX_SPEECH_CLIPS)


class SpecTimeline(Timeline[StoredSpeech]):
    """A job's timeline: its segments' speech targets refer to the job's stored inputs."""


Fetch = Callable[[InputRef, str], Path]
"""fetch(ref, name): the input at `ref` as a local file called `name` in the job's folder."""


class EditSpec(EmotionChoice, VoiceChoice, EditChoices):
    """The inputs, the target (emotion, speech clips or a timeline; intensity) and the choices of an edit
    (or of a clip preview: `preview_s` set); `EditChoices.of(spec)` is what the pipeline runs with."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    video: InputRef = Field(description="The video, or the photo a dub animates.")
    speech: tuple[InputRef, ...] = Field(default=(), max_length=MAX_SPEECH_CLIPS)
    speech_track: InputRef | None = Field(default=None, description="What the lips speak (`lips: speech`).")
    pose_video: InputRef | None = Field(default=None, description="A photo's head motion.")
    eye_video: InputRef | None = Field(default=None, description="The eyes' driving clip (`gaze`/`blink` `clip`).")
    timeline: SpecTimeline | None = None

    @model_validator(mode="after")
    def _one_target(self) -> EditSpec:
        if (self.emotion is not None) + bool(self.speech) + (self.timeline is not None) != 1:
            raise ValueError("give exactly one of an emotion, speech clips and a timeline")
        return self

    def target(self, speech: Sequence[Path]) -> EmotionTarget:
        """The target with the speech clips fetched to local paths (in the order of `speech`)."""
        return EmotionTarget(emotion=self.emotion, intensity=self.intensity, speech=tuple(speech))

    def edit_target(self, speech: Sequence[Path], fetch: Fetch) -> EditTarget:
        """What the pipeline edits toward: `target(speech)`, the voice for `from_audio`, or the
        timeline with its segments' clips fetched."""
        if self.emotion == FROM_AUDIO:
            return FollowVoice(intensity=self.intensity, neutral=self.neutral)
        if self.timeline is None:
            return self.target(speech)
        fetched = 0

        def local(clips: StoredSpeech) -> SpeechClips:
            nonlocal fetched
            fetched += 1
            paths = [fetch(ref, f"segment{fetched}-speech{i}") for i, ref in enumerate(clips.speech)]
            return SpeechClips(speech=tuple(paths))

        timeline = self.timeline.retarget(ClipTimeline, local)
        assert isinstance(timeline, ClipTimeline)
        return timeline


class SheetSpec(SheetChoice, FaceChoice):
    """A contact sheet: the video, the rows (emotions, resolved to library names or custom ids) and columns
    (intensities), the frame and the face choice."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    video: InputRef


def run_options(spec: EditSpec | SheetSpec, settings: JobsSettings) -> tuple[EditChoices, Limits]:
    """What the pipeline runs a stored job with: the job's own choices, this deployment's limits."""
    return EditChoices.of(spec), settings.limits()
