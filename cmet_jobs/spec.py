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
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cmet_core.emotion.targets import MAX_SPEECH_CLIPS, EmotionChoice, EmotionTarget
from cmet_core.emotion.timeline import ClipTimeline, ReferenceFile, ReferenceTarget, SpeechClips, Timeline
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


class StoredReference(ReferenceTarget):
    """A timeline segment's expression reference, stored with the job's inputs (or a URL)."""

    expression_reference: InputRef


class SpecTimeline(Timeline[StoredSpeech | StoredReference]):
    """A job's timeline: its segments' speech and reference targets refer to the job's stored inputs."""


InputKind = Literal["speech", "video"]
Fetch = Callable[[InputRef, str, InputKind], Path]
"""fetch(ref, name, kind): the input at `ref` as a local file called `name` in the job's folder, under the size
limit of its kind (an expression reference is a `video`: a photo or a clip)."""


class EditSpec(EmotionChoice, VoiceChoice, EditChoices):
    """The inputs, the target (emotion, speech clips or a timeline; intensity) and the choices of an edit
    (or of a clip preview: `preview_s` set); `EditChoices.of(spec)` is what the pipeline runs with."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    video: InputRef = Field(description="The video, or the photo a dub animates.")
    speech: tuple[InputRef, ...] = Field(default=(), max_length=MAX_SPEECH_CLIPS)
    speech_track: InputRef | None = Field(default=None, description="What the lips speak (`lips: speech`).")
    pose_video: InputRef | None = Field(default=None, description="A photo's head motion.")
    expression_reference: InputRef | None = Field(
        default=None, description="A photo or short clip whose face's expression is the target."
    )
    eye_video: InputRef | None = Field(default=None, description="The eyes' driving clip (`gaze`/`blink` `clip`).")
    timeline: SpecTimeline | None = None

    @model_validator(mode="after")
    def _one_target(self) -> EditSpec:
        targets = (self.emotion is not None) + bool(self.speech) + (self.expression_reference is not None)
        if targets + (self.timeline is not None) != (0 if self.faces else 1):
            raise ValueError(
                "give exactly one of an emotion, speech clips, an expression reference, a timeline and faces "
                "(each with its own)"
            )
        return self

    def target(self, speech: Sequence[Path], reference: Path | None = None) -> EmotionTarget:
        """The target with the speech clips (in the order of `speech`) or the reference fetched to local paths."""
        return EmotionTarget(
            emotion=self.emotion, intensity=self.intensity, speech=tuple(speech), expression_reference=reference
        )

    def edit_target(self, speech: Sequence[Path], fetch: Fetch) -> EditTarget | None:
        """What the pipeline edits toward: `target(speech)` (an expression reference fetched), the voice for
        `from_audio`, or the timeline with its segments' clips and references fetched; None with `faces` (each
        carries its own)."""
        if self.faces:
            return None
        if self.emotion == FROM_AUDIO:
            return FollowVoice(intensity=self.intensity, neutral=self.neutral)
        if self.timeline is None:
            ref = self.expression_reference
            return self.target(speech, fetch(ref, "expression_reference", "video") if ref is not None else None)
        fetched = 0

        def local(stored: StoredSpeech | StoredReference) -> SpeechClips | ReferenceFile:
            nonlocal fetched
            fetched += 1
            if isinstance(stored, StoredReference):
                name = f"segment{fetched}-reference"
                return ReferenceFile(expression_reference=fetch(stored.expression_reference, name, "video"))
            paths = [fetch(ref, f"segment{fetched}-speech{i}", "speech") for i, ref in enumerate(stored.speech)]
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
